// TUN -> UDP with TUN offload: one TUN read, [virtio_net_hdr][packet], as
// TunToUdp::on_read takes it. A TSO or USO super-packet is cut by
// encap::tso_split_v4 / uso_split_v4 into at most 128 segments, which join
// UDP GSO trains (encap::OpenTrain) as TunToUdp::send_tso adds them.
//
// Input: the read itself. The packet, the header scratch and the iovecs
// are all of their exact size, so a write past a segment's slot or a read
// past the packet is an ASan report. Each segment, put together, must be
// a valid IPv4 packet with correct checksums and the right slice of the
// payload, and each train one that a UDP_SEGMENT send accepts.

#include <sys/uio.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/ipv4.h"
#include "encap/coalesce.h"
#include "encap/gso_split.h"
#include "encap/gso_train.h"
#include "encap/vnet_hdr.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace udpring;
using Bytes = std::vector<uint8_t>;

constexpr size_t kMaxTsoSegments = encap::kMaxTsoSegments;

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Segment k, headers and payload put together, as the kernel sends it.
void check_segment(const Bytes& pkt, const Bytes& s, size_t k, size_t n, size_t hdrs,
                   uint16_t gso_size, bool udp) {
  const size_t ihl = size_t{pkt[0] & 0x0fu} * 4;
  FUZZ_CHECK(core::validate_ipv4(s.data(), s.size()) == core::Ipv4Error::kOk);
  FUZZ_CHECK(core::ones_sum(s.data(), ihl) == 0xffff);
  FUZZ_CHECK(s[8] == pkt[8] - 1);
  FUZZ_CHECK(load16(s.data() + 4) == static_cast<uint16_t>(load16(pkt.data() + 4) + k));
  FUZZ_CHECK(std::memcmp(s.data() + 12, pkt.data() + 12, 8) == 0);  // addresses
  if (udp) {
    FUZZ_CHECK(load16(s.data() + ihl + 4) == s.size() - ihl);
    FUZZ_CHECK(load16(s.data() + ihl + 6) != 0);  // 0 would say "no checksum"
    FUZZ_CHECK(encap::udp_checksum_ok(s.data(), s.size()));
    return;
  }
  FUZZ_CHECK(encap::tcp_checksum_ok(s.data(), s.size()));
  FUZZ_CHECK(load32(s.data() + ihl + 4) ==
             static_cast<uint32_t>(load32(pkt.data() + ihl + 4) + k * gso_size));
  const uint8_t flags = s[ihl + 13];
  const uint8_t orig = pkt[ihl + 13];
  if (k + 1 != n) FUZZ_CHECK((flags & 0x09) == 0);  // FIN and PSH only on the last
  if (k != 0) FUZZ_CHECK((flags & 0x80) == 0);      // CWR only on the first
  FUZZ_CHECK((flags & 0x76) == (orig & 0x76));      // the other flags as they were
  FUZZ_CHECK(std::memcmp(s.data() + ihl + 20, pkt.data() + ihl + 20, hdrs - ihl - 20) == 0);
}

// The trains TunToUdp::send_tso would send these segments in.
void check_trains(const std::vector<uint32_t>& sizes, uint32_t seg_bytes) {
  const core::NextHop hop{};
  encap::OpenTrain open{hop, seg_bytes, 0, 0};
  std::vector<uint32_t> train;
  const auto close = [&] {
    FUZZ_CHECK(!train.empty() && train.size() <= encap::kMaxGsoSegments);
    uint32_t total = 0;
    for (size_t i = 0; i < train.size(); ++i) {
      total += train[i];
      // UDP_SEGMENT: all as long as the first but the last, which may be shorter.
      FUZZ_CHECK(train[i] == seg_bytes || (i + 1 == train.size() && train[i] < seg_bytes));
    }
    FUZZ_CHECK(total == open.bytes && total <= encap::kMaxGsoBytes);
    train.clear();
    open = encap::OpenTrain{hop, seg_bytes, 0, 0};
  };
  for (const uint32_t bytes : sizes) {
    if (!train.empty() && !open.accepts(hop, seg_bytes, bytes)) close();
    train.push_back(bytes);
    if (open.add(bytes)) close();
  }
  if (!train.empty()) close();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < encap::kVnetHdrBytes) return 0;
  encap::VnetHdr h;
  std::memcpy(&h, data, sizeof h);
  const uint8_t type = h.gso_type & static_cast<uint8_t>(~encap::kVnetGsoEcn);
  const bool udp = type == encap::kVnetGsoUdpL4;
  if (type != encap::kVnetGsoTcpV4 && !udp) return 0;  // lone packets: udp_encap_fuzz
  Bytes pkt(data + encap::kVnetHdrBytes, data + size);
  if (pkt.size() < core::kIpv4MinHeaderBytes || (pkt[0] >> 4) != 4) return 0;  // as send_tso
  const Bytes was = pkt;
  Bytes scratch(kMaxTsoSegments * encap::kSegHdrSlotBytes);
  std::vector<iovec> iov(2 * kMaxTsoSegments);

  const encap::TsoSplit r =
      udp ? encap::uso_split_v4(pkt.data(), pkt.size(), h.gso_size, scratch.data(), kMaxTsoSegments, iov.data())
          : encap::tso_split_v4(pkt.data(), pkt.size(), h.gso_size, scratch.data(), kMaxTsoSegments, iov.data());

  FUZZ_CHECK(pkt == was);  // only the header slots are written
  if (r.status == encap::TsoStatus::kTtlExpired) FUZZ_CHECK(pkt[8] <= 1);
  if (r.status != encap::TsoStatus::kOk) return 0;
  FUZZ_CHECK(r.segments >= 1 && r.segments <= kMaxTsoSegments && h.gso_size > 0);
  const size_t hdrs = iov[0].iov_len;
  FUZZ_CHECK(hdrs >= 20 + (udp ? 8 : 20) && hdrs <= encap::kSegHdrSlotBytes && hdrs < pkt.size());
  FUZZ_CHECK(r.seg_bytes == hdrs + iov[1].iov_len);
  const uint8_t* next = pkt.data() + hdrs;  // the payload slices tile the payload
  std::vector<uint32_t> sizes;
  for (size_t k = 0; k < r.segments; ++k) {
    const iovec& hv = iov[2 * k];
    const iovec& bv = iov[2 * k + 1];
    FUZZ_CHECK(hv.iov_base == scratch.data() + k * encap::kSegHdrSlotBytes && hv.iov_len == hdrs);
    FUZZ_CHECK(bv.iov_base == next && bv.iov_len >= 1 && bv.iov_len <= h.gso_size);
    const bool last = k + 1 == r.segments;
    FUZZ_CHECK(last || bv.iov_len == h.gso_size);
    next += bv.iov_len;
    Bytes s(static_cast<const uint8_t*>(hv.iov_base), static_cast<const uint8_t*>(hv.iov_base) + hdrs);
    s.insert(s.end(), next - bv.iov_len, next);
    check_segment(pkt, s, k, r.segments, hdrs, h.gso_size, udp);
    sizes.push_back(static_cast<uint32_t>(s.size()));
  }
  FUZZ_CHECK(next == pkt.data() + pkt.size());
  check_trains(sizes, r.seg_bytes);
  return 0;
}
