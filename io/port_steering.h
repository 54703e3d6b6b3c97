#pragma once
// Which worker receives a datagram: the one the sending worker's source port
// names.
//
// The kernel's SO_REUSEPORT hash of the outer 4-tuple is a coin toss per
// sending port: with two workers, both of a peer's ports land on one socket
// half of the time. And the choice sticks to both directions of a flow, since
// a multi-queue TUN sends a flow out of the queue its last packet was written
// on: whatever worker receives a flow's ACKs carries its data too. So a
// collision left one worker per node with all the traffic.
//
// Instead, worker w of a node sends from port base + w, base a multiple of
// kSourcePortStride, and a classic BPF program on the receiving group picks
// socket (source port mod n). Every n up to 8 divides the stride, so worker w
// sends to worker w mod n of the peer, which answers from the same index:
// each flow keeps one worker per node. Steering by the outer port rather than
// by the inner flow is deliberate: UDP GRO merges consecutive datagrams of
// one 4-tuple into one buffer whatever flows they carry, so only a choice
// made per 4-tuple keeps every flow on one worker and in order. A stock
// flanneld sends everything from Backend.Port, which lands on one worker,
// as with the kernel's hash.

#include <cstdint>
#include <vector>

#include "core/be32.h"
#include "core/unique_fd.h"

namespace udpring::io {

inline constexpr uint16_t kSourcePortStride = 840;  // lcm(1, ..., 8)

/// The socket the program picks for a datagram from `source_port` (a mirror
/// of the program, for tests and for documentation).
constexpr uint32_t steered_socket(uint16_t source_port, uint32_t n_sockets) {
  return source_port % n_sockets;
}

/// Attaches the program to the SO_REUSEPORT group `fd` belongs to; socket i
/// is the i-th one bound to the group. Returns 0 or an errno value (the group
/// then keeps the kernel's hash).
int attach_port_steering(int fd, uint32_t n_sockets);

/// The first port of the range the sending sockets try: base + w for worker
/// w, base a multiple of the stride from here up, wrapping to the lowest
/// such base below 65536 - n. Exposed for tests.
struct SendPortPlan {
  uint16_t first_base = 33600;  // 40 * 840, above most ephemeral-port users' binds
};

/// Opens `n` unconnected UDP sockets bound to addr:base+0 .. addr:base+n-1
/// for the first base (see SendPortPlan) at which all of them bind, trying a
/// base per stride. Throws std::system_error when no base works.
std::vector<core::UniqueFd> open_steered_send_sockets(core::Be32 addr, unsigned n, int rcvbuf,
                                                      int sndbuf, SendPortPlan plan = {});

}  // namespace udpring::io
