#pragma once
// Big-endian loads and stores at any alignment, and the IPv4 pseudo-header
// sum: the few pieces of header arithmetic the split and coalescing code
// share. Internal to encap/.

#include <cstddef>
#include <cstdint>

namespace udpring::encap::wire {

inline uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline void store16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// Folded (not inverted) sum of the TCP/UDP pseudo header of an IPv4 packet.
inline uint32_t pseudo_sum(const uint8_t* ip, uint8_t proto, uint32_t l4_len) {
  uint32_t s = load16(ip + 12) + load16(ip + 14) + load16(ip + 16) + load16(ip + 18) + proto + l4_len;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return s;
}

// TCP flag bits (RFC 9293, byte 13 of the header).
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;
inline constexpr uint8_t kTcpCwr = 0x80;

}  // namespace udpring::encap::wire
