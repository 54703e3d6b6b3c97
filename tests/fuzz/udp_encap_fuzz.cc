// TUN -> UDP for lone packets: a turn's TUN reads (with TUN offload, each
// behind a virtio_net_hdr whose partial checksum is finished), classified
// by encap::encapsulate_batch, a route miss answered by
// encap::build_net_unreachable, and the packets to send grouped into UDP
// GSO trains by encap::group_gso_trains, as TunToUdp::on_read and
// flush_batch do.
//
// Input: [flags] then reads, each [length: 2 bytes, big-endian][bytes...]
//   flags bit 0: TUN offload (every read starts with a virtio_net_hdr)
//   flags bit 1: UDP GSO (trains of up to 64 datagrams, else one each)
// Every read sits in a buffer of its own exact size.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/ipv4.h"
#include "encap/coalesce.h"
#include "encap/gso_train.h"
#include "encap/icmp.h"
#include "encap/udp_encap.h"
#include "encap/vnet_hdr.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_routes.h"

namespace {

using namespace udpring;
using Bytes = std::vector<uint8_t>;
using encap::EncapVerdict;

constexpr size_t kBatch = 64;  // --batch's default

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

// The pseudo-header sum a kernel leaves in the checksum field of a
// CHECKSUM_PARTIAL packet: folded, not inverted.
uint16_t pseudo_sum(const Bytes& p, uint8_t proto) {
  const size_t ihl = size_t{p[0] & 0x0fu} * 4;
  uint32_t s = load16(&p[12]) + load16(&p[14]) + load16(&p[16]) + load16(&p[18]) + proto +
               static_cast<uint32_t>(p.size() - ihl);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// The read's partial checksum, finished as on_read does; false = dropped.
bool finish(Bytes& p, const encap::VnetHdr& h) {
  const Bytes was = p;
  const bool ok = encap::finish_checksum(p.data(), p.size(), h.csum_start, h.csum_offset);
  for (size_t b = 0; b < p.size(); ++b) {
    const bool field = ok && b >= size_t{h.csum_start} + h.csum_offset &&
                       b < size_t{h.csum_start} + h.csum_offset + 2;
    if (!field) FUZZ_CHECK(p[b] == was[b]);
  }
  if (!ok || core::validate_ipv4(p.data(), p.size()) != core::Ipv4Error::kOk) return ok;
  // A packet the kernel left for us to sum verifies once summed.
  const size_t ihl = size_t{p[0] & 0x0fu} * 4;
  const uint8_t proto = p[9];
  const size_t field = size_t{h.csum_start} + h.csum_offset;
  if (h.csum_start == ihl && ((proto == core::kIpProtoTcp && h.csum_offset == 16) ||
                              (proto == core::kIpProtoUdp && h.csum_offset == 6))) {
    if (load16(&was[field]) == pseudo_sum(was, proto)) {
      FUZZ_CHECK(proto == core::kIpProtoTcp ? encap::tcp_checksum_ok(p.data(), p.size())
                                            : encap::udp_checksum_ok(p.data(), p.size()));
    }
  }
  return true;
}

void check_icmp(const Bytes& offender) {
  Bytes out(encap::kIcmpUnreachMaxBytes);
  const size_t n = encap::build_net_unreachable(offender.data(), offender.size(),
                                                fuzz::kOwnLease.network, out.data());
  FUZZ_CHECK(n == 0 || (n > 28 && n <= out.size()));
  if (n) FUZZ_CHECK(core::validate_ipv4(out.data(), n) == core::Ipv4Error::kOk);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool vnet = data[0] & 1;
  const uint32_t max_segments = data[0] & 2 ? encap::kMaxGsoSegments : 1;
  std::vector<Bytes> pkts;
  for (size_t at = 1; at + 2 <= size && pkts.size() < kBatch;) {
    const size_t n = std::min<size_t>(load16(data + at), size - at - 2);
    Bytes p(data + at + 2, data + at + 2 + n);
    at += 2 + n;
    if (vnet) {
      if (p.size() < encap::kVnetHdrBytes) continue;
      encap::VnetHdr h;
      std::memcpy(&h, p.data(), sizeof h);
      p.erase(p.begin(), p.begin() + encap::kVnetHdrBytes);
      if (h.gso_type != encap::kVnetGsoNone) continue;  // TSO/USO: gso_split_fuzz
      if ((h.flags & encap::kVnetFlagNeedsCsum) && !finish(p, h)) continue;
    }
    pkts.push_back(std::move(p));
  }
  const std::vector<Bytes> was = pkts;
  std::vector<encap::PacketRef> refs;
  for (Bytes& p : pkts) refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  std::vector<encap::EncapResult> results(refs.size());
  const core::RouteSnapshot& routes = fuzz::routes();

  const size_t sends = encap::encapsulate_batch(refs, routes, results);

  size_t counted = 0;
  for (size_t i = 0; i < pkts.size(); ++i) {
    const Bytes& p = pkts[i];
    const bool valid = core::validate_ipv4(was[i].data(), was[i].size()) == core::Ipv4Error::kOk;
    const core::NextHop* hop = valid ? routes.lookup(core::Ipv4View(pkts[i].data()).dst()) : nullptr;
    if (results[i].verdict != EncapVerdict::kSend) FUZZ_CHECK(p == was[i]);
    switch (results[i].verdict) {
      case EncapVerdict::kSend:
        ++counted;
        FUZZ_CHECK(valid && hop != nullptr && results[i].hop == hop);
        FUZZ_CHECK(was[i][8] > 1 && p[8] == was[i][8] - 1);
        FUZZ_CHECK(!encap::too_big_for(*hop, p.size(), (was[i][6] & 0x40) != 0));
        for (size_t b = 0; b < p.size(); ++b) {
          if (b != 8 && b != 10 && b != 11) FUZZ_CHECK(p[b] == was[i][b]);
        }
        break;
      case EncapVerdict::kDropBadHeader:
        FUZZ_CHECK(!valid);
        break;
      case EncapVerdict::kDropNoRoute:
        FUZZ_CHECK(valid && hop == nullptr);
        check_icmp(p);
        break;
      case EncapVerdict::kDropTtl:
        FUZZ_CHECK(valid && hop != nullptr && was[i][8] <= 1);
        break;
      case EncapVerdict::kDropTooBig:
        FUZZ_CHECK(valid && hop != nullptr && was[i][8] > 1 && results[i].hop == hop);
        FUZZ_CHECK(hop->max_inner != 0 && p.size() > hop->max_inner && (was[i][6] & 0x40) != 0);
        break;
    }
  }
  FUZZ_CHECK(counted == sends);

  std::vector<encap::GsoTrain> trains(refs.size());
  const size_t ntrains = encap::group_gso_trains(refs, results, max_segments, trains);
  FUZZ_CHECK(ntrains <= refs.size());
  size_t next = 0;      // trains keep packet order and never overlap
  size_t in_trains = 0;  // and hold every packet to send
  for (size_t t = 0; t < ntrains; ++t) {
    const encap::GsoTrain& tr = trains[t];
    FUZZ_CHECK(tr.first >= next && tr.count >= 1 && tr.count <= max_segments);
    FUZZ_CHECK(tr.first + tr.count <= refs.size());
    FUZZ_CHECK(tr.seg_bytes == refs[tr.first].len);
    uint32_t bytes = 0;
    for (uint32_t k = 0; k < tr.count; ++k) {
      const size_t i = tr.first + k;
      FUZZ_CHECK(results[i].verdict == EncapVerdict::kSend);
      FUZZ_CHECK(*results[i].hop == *results[tr.first].hop);
      FUZZ_CHECK(refs[i].len == tr.seg_bytes || (k + 1 == tr.count && refs[i].len < tr.seg_bytes));
      bytes += refs[i].len;
    }
    FUZZ_CHECK(bytes <= encap::kMaxGsoBytes || tr.count == 1);
    in_trains += tr.count;
    next = tr.first + tr.count;
  }
  FUZZ_CHECK(in_trains == sends);
  return 0;
}
