#pragma once
// UDP -> TUN: decide, for a batch of received datagram payloads, which ones
// are written into the TUN. Each payload must be one whole IPv4 packet from a
// known peer, addressed to this node's pods and, by default, from the
// sending peer's pods; its TTL is decremented in place (flannel does so on
// both sides).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "core/be32.h"
#include "core/ipv4_addr.h"
#include "core/route_table.h"
#include "encap/packet_ref.h"

namespace udpring::encap {

/// Which datagrams reach the TUN (--peer-check). The original accepted
/// anything on its port; whoever reached it could inject packets into the
/// pod network and use the node as a relay.
enum class PeerCheck : uint8_t {
  kOff,     // anything (the original's behaviour)
  kPeer,    // outer source is a peer, inner destination is in our lease
  kStrict,  // kPeer, and the inner source is in the sending peer's lease
};

/// "off", "peer", "strict"; nullopt for anything else.
std::optional<PeerCheck> parse_peer_check(std::string_view text) noexcept;
std::string_view peer_check_name(PeerCheck mode) noexcept;

/// What decapsulate_batch checks a datagram against.
struct DecapPolicy {
  PeerCheck mode = PeerCheck::kStrict;
  core::Ipv4Prefix local;  // this node's lease: its pods and the flannel0 address
};

enum class DecapVerdict : uint8_t {
  kWrite,              // TTL decremented; write the payload into the TUN
  kDropBadHeader,      // payload is not one whole IPv4 packet (garbage, IPv6, cut)
  kDropUnknownPeer,    // outer source is no peer in the route table
  kDropInnerDstNotLocal,  // inner destination is outside our lease (a relay attempt)
  kDropInnerSrcNotPeer,   // inner source is outside the sending peer's lease (spoofed)
  kDropTtl,            // TTL would reach 0
};

struct DecapInput {
  PacketRef pkt;        // the datagram payload
  core::Be32 outer_src; // the datagram's source address
};

/// Classifies `in` under `policy` and patches the TTL/checksum of every
/// packet to write. `out` must be at least as long as `in`. Returns the
/// number of kWrite verdicts. The strict check is one more route lookup per
/// packet (the inner source's owner must be the outer source).
size_t decapsulate_batch(std::span<const DecapInput> in, const core::RouteSnapshot& routes,
                         const DecapPolicy& policy, std::span<DecapVerdict> out) noexcept;

}  // namespace udpring::encap
