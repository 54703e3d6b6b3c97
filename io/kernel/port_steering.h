#pragma once
// Which worker receives a datagram: the one the sending worker's source port
// names.
//
// The kernel's SO_REUSEPORT hash of the outer 4-tuple is a coin toss per
// sending port: with two workers, both of a peer's ports land on one socket
// half of the time. Without TUN steering (io/kernel/tun_steering.h) the choice also
// sticks to both directions of a flow, since a multi-queue TUN then sends a
// flow out of the queue its last packet was written on: whatever worker
// receives a flow's ACKs carries its data too. So a collision left one
// worker per node with all the traffic.
//
// Instead, worker w of a node sends from port base + w, base a multiple of
// kSourcePortStride, and a classic BPF program on the receiving group picks
// socket (port mod stride) mod n, that is w mod n. Worker w of one node thus
// talks to worker w of the other, which answers from the same index: with
// equal worker counts each flow keeps one worker per node; with different
// counts it settles after one round trip. Steering by the outer port rather
// than by the inner flow is deliberate: UDP GRO merges consecutive datagrams
// of one 4-tuple into one receive whatever flows they carry, so only a choice
// made per 4-tuple keeps every flow on one worker and in order. A stock
// flanneld sends everything from Backend.Port, which lands on one worker, as
// it did with the kernel's hash.

#include <cstdint>
#include <vector>

#include "core/be32.h"
#include "core/unique_fd.h"

namespace udpring::io {

inline constexpr uint16_t kSourcePortStride = 840;  // lcm(1, ..., 8): room for 840 workers
// 40 strides: above Kubernetes' NodePort range (30000-32767), which a node's
// kube-proxy may hold.
inline constexpr uint16_t kFirstSendPortBase = 40 * kSourcePortStride;

/// The socket the program picks for a datagram from `source_port` (a mirror
/// of the program, for tests and for documentation).
constexpr uint32_t steered_socket(uint16_t source_port, uint32_t n_sockets) {
  return source_port % kSourcePortStride % n_sockets;
}

/// Attaches the program to the SO_REUSEPORT group `fd` belongs to; socket i
/// is the i-th one bound to the group (so the group must be new: the daemon
/// waits until a plain bind of the port works before it builds one). Returns
/// 0 or an errno value (the group then keeps the kernel's hash).
int attach_port_steering(int fd, uint32_t n_sockets);

/// Opens `n` UDP sockets to send from, bound to addr:base+0 .. addr:base+n-1
/// for the first base, from `first_base` up in strides and then from the
/// lowest unprivileged one, at which all of them bind. They never receive: a
/// filter drops whatever reaches them. Returns an empty vector when no base
/// works (the caller falls back to ports the kernel picks); throws
/// std::system_error on any other error.
std::vector<core::UniqueFd> open_steered_send_sockets(core::Be32 addr, unsigned n, int sndbuf,
                                                      uint16_t first_base = kFirstSendPortBase);

}  // namespace udpring::io
