#include "encap/peer_icmp_error.h"

#include <cstring>

#include "encap/wire_bytes.h"

namespace udpring::encap {
namespace {

constexpr uint8_t kIcmpDestUnreach = 3;
constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoUdp = 17;

core::Be32 be32(const uint8_t* p) noexcept {
  uint32_t raw;
  std::memcpy(&raw, p, 4);
  return core::Be32::from_raw(raw);
}

PeerUnreach reason_of(uint8_t code) noexcept {
  switch (code) {
    case 0: case 6: case 11: return PeerUnreach::kNet;
    case 1: case 7: case 12: return PeerUnreach::kHost;
    case 3: return PeerUnreach::kPort;
    case 4: return PeerUnreach::kFragmentationNeeded;
    case 9: case 10: case 13: return PeerUnreach::kProhibited;
    default: return PeerUnreach::kOther;
  }
}

}  // namespace

std::string_view peer_unreach_name(PeerUnreach r) noexcept {
  switch (r) {
    case PeerUnreach::kNet: return "net_unreachable";
    case PeerUnreach::kHost: return "host_unreachable";
    case PeerUnreach::kPort: return "port_unreachable";
    case PeerUnreach::kFragmentationNeeded: return "fragmentation_needed";
    case PeerUnreach::kProhibited: return "prohibited";
    case PeerUnreach::kOther: return "other";
  }
  return "other";
}

std::optional<PeerIcmpError> parse_peer_icmp_error(std::span<const uint8_t> p) noexcept {
  // The outer IP header, as a raw socket hands it over.
  if (p.size() < 20 || p[0] >> 4 != 4 || p[9] != kProtoIcmp) return std::nullopt;
  const size_t ihl = size_t{p[0] & 0x0fu} * 4;
  if (ihl < 20 || p.size() < ihl + 8) return std::nullopt;
  const uint8_t* icmp = p.data() + ihl;
  if (icmp[0] != kIcmpDestUnreach) return std::nullopt;
  // The quoted datagram: its IP header (with options) and 8 bytes of UDP.
  const std::span<const uint8_t> q = p.subspan(ihl + 8);
  if (q.size() < 20 || q[0] >> 4 != 4 || q[9] != kProtoUdp) return std::nullopt;
  const size_t qihl = size_t{q[0] & 0x0fu} * 4;
  if (qihl < 20 || q.size() < qihl + 8) return std::nullopt;
  PeerIcmpError e;
  e.reporter = be32(p.data() + 12);
  e.local = be32(q.data() + 12);
  e.peer = be32(q.data() + 16);
  e.local_port = wire::load16(q.data() + qihl);
  e.peer_port = wire::load16(q.data() + qihl + 2);
  e.reason = reason_of(icmp[1]);
  if (e.reason == PeerUnreach::kFragmentationNeeded) e.next_hop_mtu = wire::load16(icmp + 6);
  return e;
}

}  // namespace udpring::encap
