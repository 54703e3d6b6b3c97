#include "encap/icmp.h"

#include <algorithm>
#include <cstring>

#include "core/ipv4.h"

namespace udpring::encap {
namespace {

bool is_icmp_error_type(uint8_t type) noexcept {
  // Destination Unreachable, Source Quench, Redirect, Time Exceeded, Parameter Problem.
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

bool is_unicast(uint32_t host_order) noexcept {
  return host_order != 0 && host_order != 0xffffffffu && (host_order >> 28) != 0xe;
}

}  // namespace

bool icmp_error_allowed(const uint8_t* offender, size_t len) noexcept {
  if (len < core::kIpv4MinHeaderBytes) return false;
  core::Ipv4View ip(const_cast<uint8_t*>(offender));
  const size_t ihl = ip.header_bytes();
  // The quote is the whole header; a super-packet's total length (0 for a
  // BIG TCP one) says nothing about the bytes we have, so `len` decides.
  if (ihl < core::kIpv4MinHeaderBytes || ihl > len) return false;
  if (ip.frag_offset() != 0) return false;
  if (!is_unicast(ip.src().host()) || !is_unicast(ip.dst().host())) return false;
  if (ip.protocol() == core::kIpProtoIcmp) {
    // An ICMP packet too short to carry a type byte is not worth answering.
    if (len <= ihl) return false;
    if (is_icmp_error_type(offender[ihl])) return false;
  }
  return true;
}

size_t build_net_unreachable(const uint8_t* offender, size_t len, core::Be32 src,
                             uint8_t* out) noexcept {
  return build_icmp_error(IcmpError::kNetUnreachable, offender, len, src, out);
}

size_t build_icmp_error(IcmpError kind, const uint8_t* offender, size_t len, core::Be32 src,
                        uint8_t* out, uint16_t next_hop_mtu) noexcept {
  if (!icmp_error_allowed(offender, len)) return 0;
  const size_t ihl = size_t{offender[0] & 0x0fu} * 4;
  const size_t quote = ihl + std::min<size_t>(8, len - ihl);
  const size_t total = 20 + 8 + quote;

  uint8_t* ip = out;
  ip[0] = 0x45;  // version 4, IHL 5
  ip[1] = 0;     // TOS
  ip[2] = static_cast<uint8_t>(total >> 8);
  ip[3] = static_cast<uint8_t>(total);
  std::memset(ip + 4, 0, 4);  // ID 0, no flags, offset 0
  ip[8] = kIcmpNetUnreachTtl;
  ip[9] = core::kIpProtoIcmp;
  std::memcpy(ip + 12, &src.raw, 4);
  std::memcpy(ip + 16, offender + 12, 4);  // back to the offender's source
  core::ipv4_set_header_checksum(ip);

  uint8_t* icmp = out + 20;
  icmp[0] = kind == IcmpError::kTimeExceeded ? 11 : 3;  // Time Exceeded, Destination Unreachable
  // Time Exceeded in transit and Net Unreachable are code 0.
  icmp[1] = kind == IcmpError::kFragmentationNeeded ? 4 : 0;
  std::memset(icmp + 2, 0, 6);  // checksum placeholder + unused word
  if (kind == IcmpError::kFragmentationNeeded) {
    icmp[6] = static_cast<uint8_t>(next_hop_mtu >> 8);
    icmp[7] = static_cast<uint8_t>(next_hop_mtu);
  }
  // The quote is a few header bytes of an error reply, not forwarded payload.
  std::memcpy(icmp + 8, offender, quote);
  const uint16_t c = core::internet_checksum(icmp, 8 + quote);
  icmp[2] = static_cast<uint8_t>(c >> 8);
  icmp[3] = static_cast<uint8_t>(c);
  return total;
}

}  // namespace udpring::encap
