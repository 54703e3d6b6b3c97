// UDP -> TUN with TUN offload: one receive (maybe several datagrams merged
// by UDP GRO) cut into datagrams as UdpToTun::split_gro does, the ones
// decapsulation lets through (valid IPv4, TTL - 1), then
// encap::plan_coalescing, as UdpToTun::write_vnet calls it.
//
// Input: [flags][max_run][gso_size: 2 bytes, big-endian][payload...]
//   flags bit 0: merge UDP flows too (USO offload granted)
//   flags bit 1: the kernel verified the outer checksum (a GRO receive)
//   max_run: 1 + max_run % 64 segments per run at most
//   gso_size: the UDP_GRO cmsg's segment size; 0 = one datagram
// Each run is then written out as the TUN would receive it
// ([first packet][the others from payload_offset() on]) and checked: one
// valid IPv4 packet whose checksum verifies once finished (NEEDS_CSUM),
// which encap::tso_split_v4 / uso_split_v4 cut back into the very
// segments it was merged from.

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/ipv4.h"
#include "encap/coalesce.h"
#include "encap/gso_split.h"
#include "encap/vnet_hdr.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace udpring;
using Bytes = std::vector<uint8_t>;

constexpr size_t kHeader = 4;
constexpr uint32_t kMaxGroSegments = 64;  // io/dataplane/udp_to_tun.h

uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

bool header_checksum_ok(const Bytes& p) {
  return core::ones_sum(p.data(), size_t{p[0] & 0x0fu} * 4) == 0xffff;
}

// Run `run` as one GSO packet, checked, then cut again and compared with
// the packets it came from (`was`: before planning).
void check_merged(const std::vector<Bytes>& pkts, const std::vector<Bytes>& was,
                  const encap::CoalescedRun& run) {
  const encap::VnetHdr& v = run.vnet;
  const bool tcp = v.gso_type == encap::kVnetGsoTcpV4;
  FUZZ_CHECK(tcp || v.gso_type == encap::kVnetGsoUdpL4);
  FUZZ_CHECK(v.flags == encap::kVnetFlagNeedsCsum && v.csum_start == 20);
  FUZZ_CHECK(v.csum_offset == (tcp ? 16 : 6));
  const size_t hdrs = run.payload_offset();
  FUZZ_CHECK(hdrs == v.hdr_len && v.gso_size > 0);

  Bytes gso = pkts[run.first];
  FUZZ_CHECK(gso.size() == hdrs + v.gso_size);  // the first segment sets the size
  for (uint32_t k = 1; k < run.count; ++k) {
    const Bytes& p = pkts[run.first + k];
    FUZZ_CHECK(p == was[run.first + k]);  // only the first packet is rewritten
    FUZZ_CHECK(p.size() > hdrs && p.size() - hdrs <= v.gso_size);
    gso.insert(gso.end(), p.begin() + static_cast<long>(hdrs), p.end());
  }
  FUZZ_CHECK(gso.size() <= 65535);
  FUZZ_CHECK(core::validate_ipv4(gso.data(), gso.size()) == core::Ipv4Error::kOk);
  FUZZ_CHECK(header_checksum_ok(gso));
  // What the kernel does with NEEDS_CSUM before the stack sees it.
  Bytes summed = gso;
  FUZZ_CHECK(encap::finish_checksum(summed.data(), summed.size(), v.csum_start, v.csum_offset));
  FUZZ_CHECK(tcp ? encap::tcp_checksum_ok(summed.data(), summed.size())
                 : encap::udp_checksum_ok(summed.data(), summed.size()));

  std::vector<uint8_t> scratch(kMaxGroSegments * encap::kSegHdrSlotBytes);
  std::vector<iovec> iov(2 * kMaxGroSegments);
  const encap::TsoSplit split =
      tcp ? encap::tso_split_v4(gso.data(), gso.size(), v.gso_size, scratch.data(), kMaxGroSegments, iov.data())
          : encap::uso_split_v4(gso.data(), gso.size(), v.gso_size, scratch.data(), kMaxGroSegments, iov.data());
  if (gso[8] <= 1) {  // the split takes a TTL off too
    FUZZ_CHECK(split.status == encap::TsoStatus::kTtlExpired);
    return;
  }
  FUZZ_CHECK(split.status == encap::TsoStatus::kOk);
  FUZZ_CHECK(split.segments == run.count);
  for (uint32_t k = 0; k < run.count; ++k) {
    const Bytes& orig = was[run.first + k];
    const auto* hdr = static_cast<const uint8_t*>(iov[2 * k].iov_base);
    const auto* body = static_cast<const uint8_t*>(iov[2 * k + 1].iov_base);
    FUZZ_CHECK(iov[2 * k].iov_len == hdrs);
    FUZZ_CHECK(iov[2 * k + 1].iov_len == orig.size() - hdrs);
    FUZZ_CHECK(std::memcmp(body, orig.data() + hdrs, orig.size() - hdrs) == 0);
    if (tcp) FUZZ_CHECK(load32(hdr + 24) == load32(orig.data() + 24));  // sequence number
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeader) return 0;
  const bool udp = data[0] & 1;
  const bool outer_verified = data[0] & 2;
  const uint32_t max_run = 1 + data[1] % kMaxGroSegments;
  const uint32_t len = static_cast<uint32_t>(size - kHeader);
  uint32_t seg = len;
  const uint32_t gso_size = (uint32_t{data[2]} << 8) | data[3];
  if (gso_size > 0 && gso_size < len) seg = gso_size;

  // The datagrams decapsulation would write, each in a buffer of its own size.
  std::vector<Bytes> pkts;
  const uint8_t* payload = data + kHeader;
  for (uint32_t off = 0, n = 0; off < len && n < kMaxGroSegments; off += seg, ++n) {
    Bytes p(payload + off, payload + off + std::min(seg, len - off));
    if (core::validate_ipv4(p.data(), p.size()) != core::Ipv4Error::kOk) continue;
    if (!core::ipv4_decrement_ttl(p.data())) continue;
    pkts.push_back(std::move(p));
  }
  const std::vector<Bytes> was = pkts;
  std::vector<encap::PacketRef> refs;
  for (Bytes& p : pkts) refs.push_back({p.data(), static_cast<uint32_t>(p.size()), outer_verified});
  std::vector<encap::CoalescedRun> runs(refs.size());

  const encap::CoalescePlan plan = encap::plan_coalescing(refs, max_run, runs, udp);

  FUZZ_CHECK(plan.runs <= refs.size() && plan.checksum_failures <= refs.size());
  size_t next = 0;  // the runs cover every packet once, in order
  for (size_t r = 0; r < plan.runs; ++r) {
    const encap::CoalescedRun& run = runs[r];
    FUZZ_CHECK(run.first == next && run.count >= 1 && run.count <= max_run);
    FUZZ_CHECK(next + run.count <= refs.size());
    next += run.count;
    if (run.count == 1) {
      const encap::VnetHdr none{};
      FUZZ_CHECK(std::memcmp(&run.vnet, &none, sizeof none) == 0);
      FUZZ_CHECK(pkts[run.first] == was[run.first]);
    } else {
      check_merged(pkts, was, run);
    }
  }
  FUZZ_CHECK(next == refs.size());
  return 0;
}
