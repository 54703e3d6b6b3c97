#pragma once
// Steers datagrams arriving at the SO_REUSEPORT group to a worker by the
// inner packet's flow, not by the outer UDP 4-tuple.
//
// All traffic from one peer is a handful of outer 4-tuples (stock flannel
// sends everything from port 8285, each udpringd worker from its own port), so
// the kernel's own hash puts whole peers, often all of them, on one worker.
// Worse, a TUN with several queues sends a flow out of the queue its last
// packet was written on, so the workers that receive a flow's ACKs end up
// carrying its data too: whatever the outer hash picks, it picks for both
// directions. A classic BPF program on the group picks the socket from the
// inner IPv4 addresses and ports instead, with a hash that is the same in
// both directions, so each inner flow stays on one worker per node and
// different flows spread over the workers.

#include <cstdint>
#include <span>

namespace udpring::io {

/// The socket index (0..n_sockets-1) the program picks for a datagram whose
/// payload is `inner` (an IPv4 packet), or kFlowSteeringNoChoice when it does
/// not look at it (not IPv4, too short), in which case the kernel's hash
/// decides. Mirrors the BPF program, for tests and for documentation.
inline constexpr uint32_t kFlowSteeringNoChoice = 0xffffffffu;
uint32_t flow_steering_index(std::span<const uint8_t> inner, uint32_t n_sockets);

/// Attaches the program to the SO_REUSEPORT group `fd` belongs to. Index i is
/// the i-th socket bound to the group. Returns 0 or an errno value (the group
/// then keeps the kernel's hash).
int attach_flow_steering(int fd, uint32_t n_sockets);

}  // namespace udpring::io
