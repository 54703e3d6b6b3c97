#pragma once
// Which TUN queue, and so which worker, reads a flow: the next one in turn
// when the flow is first seen.
//
// Without a program, a multi-queue TUN picks a flow's queue by its hash (or
// by the queue its last packet was written on), so 4 flows land 2-2 on two
// workers only 3 times in 8, and the busier worker caps the node. A steering
// program (TUNSETSTEERINGEBPF) runs for every packet the kernel sends into
// the TUN and returns the queue: this one looks the packet's TCP or UDP
// 4-tuple up in an LRU hash map and, on a miss, takes the next number of a
// shared counter and stores it for the flow, so consecutive new flows take
// the queues in turn and every packet of a flow leaves on one queue, in
// order. A TCP SYN always takes the next number, so a connection that
// reuses an earlier one's ports takes its turn as well. Fragments and other
// protocols go by a hash of the addresses, as all fragments of a datagram
// must agree and carry no ports. Nothing runs in the daemon per flow or per
// packet: the choice is made in the kernel, for the flow's first packet too.
// The program is tun_steering.bpf.c, built into the library.

#include <cstdint>
#include <span>
#include <string>

#include "core/unique_fd.h"

namespace udpring::io {

class TunSteering {
 public:
  /// Flows remembered; the least recently used is forgotten beyond that (it
  /// takes the next queue in turn if it ever sends again).
  static constexpr uint32_t kMaxFlows = 65536;

  /// Creates the maps and loads the program. Throws std::system_error naming
  /// the step that failed (no bpf() in a container without CAP_BPF, a kernel
  /// without atomic fetch-and-add in BPF, before 5.12), with the
  /// verifier's last line when it refused the program.
  TunSteering();

  /// Attaches the program to the multi-queue TUN that `tun_fd` is a queue
  /// of. Returns 0 or an errno value (the TUN then keeps its own choice).
  int attach(int tun_fd) const;

  /// How many flows the program has placed so far.
  uint64_t flows_placed() const;

  /// Runs the program once on an IPv4 packet (BPF_PROG_TEST_RUN), as if the
  /// kernel sent it into the TUN, and returns the number it picks (the TUN
  /// uses it mod its queue count). For tests. Throws std::system_error.
  uint32_t run_on(std::span<const uint8_t> ipv4_packet) const;

 private:
  core::UniqueFd flows_;    // LRU hash: flow key -> number in turn
  core::UniqueFd counter_;  // array of one u32: the next number in turn
  core::UniqueFd prog_;
};

}  // namespace udpring::io
