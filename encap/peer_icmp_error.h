#pragma once
// What an ICMP Destination Unreachable says about a datagram we sent to a
// peer: the message as a raw ICMP socket returns it (IP header first),
// quoting our datagram's IP header and the first 8 bytes of its UDP header.
// A peer whose udpringd or flanneld is down answers with port unreachable;
// a router on the way may answer with net or host unreachable, or with
// fragmentation needed and the next hop's MTU.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "core/be32.h"

namespace udpring::encap {

/// Why, from the ICMP code.
enum class PeerUnreach : uint8_t {
  kNet,                  // code 0 (and 6, 11: network unknown, for TOS)
  kHost,                 // code 1 (and 7, 12)
  kPort,                 // code 3: nothing listens on the peer's port
  kFragmentationNeeded,  // code 4: DF set and a hop's MTU is smaller
  kProhibited,           // codes 9, 10, 13: a firewall said no
  kOther,                // any other code (protocol unreachable, source route failed...)
};
inline constexpr size_t kPeerUnreachCount = 6;

/// "net_unreachable", "host_unreachable", "port_unreachable",
/// "fragmentation_needed", "prohibited", "other".
std::string_view peer_unreach_name(PeerUnreach r) noexcept;

struct PeerIcmpError {
  core::Be32 peer;          // the quoted datagram's destination
  uint16_t peer_port = 0;   // its destination port (host order)
  core::Be32 local;         // its source: our address
  uint16_t local_port = 0;  // its source port (host order)
  PeerUnreach reason = PeerUnreach::kOther;
  uint16_t next_hop_mtu = 0;  // with kFragmentationNeeded, when the router gave one (RFC 1191)
  core::Be32 reporter;      // who sent the ICMP message
};

/// Parses `packet`; nullopt unless it is a whole IPv4 header, ICMP type 3,
/// and a quoted IPv4 header of protocol UDP followed by at least 8 bytes.
/// Never reads past the span.
std::optional<PeerIcmpError> parse_peer_icmp_error(std::span<const uint8_t> packet) noexcept;

}  // namespace udpring::encap
