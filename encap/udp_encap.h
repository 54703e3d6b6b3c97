#pragma once
// TUN -> UDP: decide, for a batch of packets read from the TUN, which peer
// each one goes to. flannel order: validate, route lookup (a miss gets ICMP
// net-unreachable), then TTL - 1 with the checksum fixed in place; and, as
// a router does between the TTL check and the decrement, a packet with DF
// set that the path to its peer cannot carry is refused (the caller answers
// with ICMP fragmentation needed).

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/route_table.h"
#include "encap/packet_ref.h"

namespace udpring::encap {

/// What the datagram adds to the packet it carries, flannel's
/// encapOverhead: the outer IPv4 header (20) and the UDP header (8).
inline constexpr uint32_t kEncapOverhead = 28;

enum class EncapVerdict : uint8_t {
  kSend,           // TTL decremented; send to `hop`
  kDropBadHeader,  // not one whole IPv4 packet
  kDropNoRoute,    // no peer covers the destination (caller may answer ICMP)
  kDropTtl,        // TTL would reach 0
  kDropTooBig,     // DF set and longer than hop->max_inner (caller may answer ICMP)
};

/// True when a packet of `len` bytes whose header says `dont_fragment`
/// cannot go to `hop` whole: a router on the path told us of a smaller MTU.
/// Without DF it goes, and the kernel fragments the datagram that carries it.
inline bool too_big_for(const core::NextHop& hop, size_t len, bool dont_fragment) noexcept {
  return hop.max_inner != 0 && len > hop.max_inner && dont_fragment;
}

struct EncapResult {
  const core::NextHop* hop = nullptr;  // valid for kSend and kDropTooBig; points into the snapshot
  EncapVerdict verdict = EncapVerdict::kDropBadHeader;
};

/// Classifies `pkts` and patches the TTL/checksum of every packet to send.
/// `out` must be at least as long as `pkts`. The returned hops point into
/// `routes` and are valid until the caller's next quiescent point.
/// Returns the number of kSend verdicts. Never allocates, never throws.
size_t encapsulate_batch(std::span<const PacketRef> pkts, const core::RouteSnapshot& routes,
                         std::span<EncapResult> out) noexcept;

}  // namespace udpring::encap
