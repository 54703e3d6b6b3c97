#pragma once
// UDP -> TUN: decide, for a batch of received datagram payloads, which ones
// are written into the TUN. Each payload must be one whole IPv4 packet from a
// known peer; its TTL is decremented in place (flannel does so on both sides).

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/be32.h"
#include "core/route_table.h"
#include "encap/packet_ref.h"

namespace udpring::encap {

enum class DecapVerdict : uint8_t {
  kWrite,          // TTL decremented; write the payload into the TUN
  kDropBadHeader,  // payload is not one whole IPv4 packet (garbage, IPv6, cut)
  kDropUnknownPeer,// outer source is no peer in the route table
  kDropTtl,        // TTL would reach 0
};

struct DecapInput {
  PacketRef pkt;        // the datagram payload
  core::Be32 outer_src; // the datagram's source address
};

/// Classifies `in` and patches the TTL/checksum of every packet to write.
/// With `check_peer`, datagrams whose source is not a next hop of `routes` are
/// dropped (the original accepted anything on the port). `out` must be at
/// least as long as `in`. Returns the number of kWrite verdicts.
size_t decapsulate_batch(std::span<const DecapInput> in, const core::RouteSnapshot& routes,
                         bool check_peer, std::span<DecapVerdict> out) noexcept;

}  // namespace udpring::encap
