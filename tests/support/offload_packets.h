#pragma once
// Packets for the offload tests (TSO/USO split, coalescing): TCP and UDP
// over IPv4 with correct checksums, and a TSO split flattened into whole
// segments.

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/ipv4.h"
#include "core/ones_sum.h"
#include "encap/gso_split.h"
#include "tests/support/packet_builder.h"

namespace udpring::test {

inline constexpr uint8_t kAck = 0x10, kPsh = 0x08, kFin = 0x01, kCwr = 0x80;

inline uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// A TCP/IPv4 packet with a correct TCP checksum.
inline std::vector<uint8_t> tcp_packet(uint32_t seq, const std::vector<uint8_t>& data, uint8_t flags = kAck,
                                uint32_t ack = 777, size_t opt_bytes = 12, uint8_t ttl = 64) {
  // Sized whole up front: GCC 12 warns (-Warray-bounds, wrongly) about an
  // insert that grows a vector it has inlined.
  std::vector<uint8_t> tcp(20 + opt_bytes + data.size(), 0);
  tcp[0] = 0x30; tcp[1] = 0x39;  // 12345
  tcp[2] = 0x13; tcp[3] = 0x89;  // 5001
  for (int b = 0; b < 4; ++b) tcp[4 + b] = static_cast<uint8_t>(seq >> (24 - 8 * b));
  for (int b = 0; b < 4; ++b) tcp[8 + b] = static_cast<uint8_t>(ack >> (24 - 8 * b));
  tcp[12] = static_cast<uint8_t>(((20 + opt_bytes) / 4) << 4);
  tcp[13] = flags;
  tcp[14] = 0xff;
  for (size_t o = 0; o < opt_bytes; ++o) tcp[20 + o] = o % 4 == 0 ? 1 : static_cast<uint8_t>(o);
  std::copy(data.begin(), data.end(), tcp.begin() + static_cast<long>(20 + opt_bytes));
  auto p = PacketBuilder().protocol(core::kIpProtoTcp).ttl(ttl).payload(tcp).build();
  // TCP checksum over pseudo header + segment.
  std::vector<uint8_t> pseudo(p.begin() + 12, p.begin() + 20);
  pseudo.push_back(0);
  pseudo.push_back(6);
  pseudo.push_back(static_cast<uint8_t>(tcp.size() >> 8));
  pseudo.push_back(static_cast<uint8_t>(tcp.size()));
  const uint32_t s = core::ones_sum(p.data() + 20, tcp.size(), core::ones_sum(pseudo.data(), 12));
  p[36] = static_cast<uint8_t>(~s >> 8);
  p[37] = static_cast<uint8_t>(~s);
  return p;
}

// A UDP/IPv4 packet with a correct UDP checksum (or none, with `zero_csum`).
inline std::vector<uint8_t> udp_packet(const std::vector<uint8_t>& data, uint16_t sport = 4000,
                                bool zero_csum = false) {
  std::vector<uint8_t> udp(8 + data.size(), 0);
  udp[0] = static_cast<uint8_t>(sport >> 8);
  udp[1] = static_cast<uint8_t>(sport);
  udp[2] = 0x13; udp[3] = 0x88;  // 5000
  const size_t l4 = 8 + data.size();
  udp[4] = static_cast<uint8_t>(l4 >> 8);
  udp[5] = static_cast<uint8_t>(l4);
  std::copy(data.begin(), data.end(), udp.begin() + 8);
  auto p = PacketBuilder().protocol(core::kIpProtoUdp).payload(udp).build();
  if (!zero_csum) {
    std::vector<uint8_t> pseudo(p.begin() + 12, p.begin() + 20);
    pseudo.insert(pseudo.end(), {0, 17, static_cast<uint8_t>(l4 >> 8), static_cast<uint8_t>(l4)});
    uint16_t c = static_cast<uint16_t>(~core::ones_sum(p.data() + 20, l4, core::ones_sum(pseudo.data(), 12)));
    if (c == 0) c = 0xffff;
    p[26] = static_cast<uint8_t>(c >> 8);
    p[27] = static_cast<uint8_t>(c);
  }
  return p;
}

struct Split {
  std::vector<uint8_t> scratch;
  std::vector<iovec> iov;
  encap::TsoSplit r;
  std::vector<std::vector<uint8_t>> segments;  // headers + payload, flattened
};

inline Split split(std::vector<uint8_t>& super, uint16_t mss, size_t max = 64) {
  Split s;
  s.scratch.resize(max * encap::kSegHdrSlotBytes);
  s.iov.resize(2 * max);
  s.r = encap::tso_split_v4(super.data(), super.size(), mss, s.scratch.data(), max, s.iov.data());
  for (uint32_t k = 0; k < s.r.segments; ++k) {
    std::vector<uint8_t> seg;
    for (int part = 0; part < 2; ++part) {
      const auto* b = static_cast<const uint8_t*>(s.iov[2 * k + part].iov_base);
      seg.insert(seg.end(), b, b + s.iov[2 * k + part].iov_len);
    }
    s.segments.push_back(seg);
  }
  return s;
}

}  // namespace udpring::test
