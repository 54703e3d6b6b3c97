#pragma once
// TUN -> UDP: decide, for a batch of packets read from the TUN, which peer
// each one goes to. flannel order: validate, route lookup (a miss gets ICMP
// net-unreachable), then TTL - 1 with the checksum fixed in place.

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/route_table.h"
#include "encap/packet_ref.h"

namespace udpring::encap {

enum class EncapVerdict : uint8_t {
  kSend,           // TTL decremented; send to `hop`
  kDropBadHeader,  // not one whole IPv4 packet
  kDropNoRoute,    // no peer covers the destination (caller may answer ICMP)
  kDropTtl,        // TTL would reach 0
};

struct EncapResult {
  const core::NextHop* hop = nullptr;  // valid for kSend; points into the snapshot
  EncapVerdict verdict = EncapVerdict::kDropBadHeader;
};

/// Classifies `pkts` and patches the TTL/checksum of every packet to send.
/// `out` must be at least as long as `pkts`. The returned hops point into
/// `routes` and are valid until the caller's next quiescent point.
/// Returns the number of kSend verdicts. Never allocates, never throws.
size_t encapsulate_batch(std::span<const PacketRef> pkts, const core::RouteSnapshot& routes,
                         std::span<EncapResult> out) noexcept;

}  // namespace udpring::encap
