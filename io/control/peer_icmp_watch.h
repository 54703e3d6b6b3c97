#pragma once
// ICMP Destination Unreachable about the datagrams we send to peers, read on
// the control thread and counted per peer: a peer whose udpringd or
// flanneld is down answers every datagram with port unreachable, and
// without this its pods' traffic would vanish with nothing to show for it.
//
// Not IP_RECVERR on the workers' sockets: on an unconnected UDP socket it
// also sets the socket's pending error, which fails the worker's next
// receive or send, whichever peer that one is for. A raw ICMP socket gets a
// copy of each message instead, filtered in the kernel to type 3, and the
// workers never see any of it.
//
// A fragmentation needed from a router on the way also tells the path MTU
// to that peer: it becomes the peer's limit in the route table (MTU - 28,
// the outer headers), and the workers answer a DF packet over it with a
// fragmentation needed of their own, to the pod that sent it, as a router
// would. The kernel keeps a learned path MTU for 10 minutes
// (net.ipv4.route.mtu_expires), and so does this; it accepts no MTU below
// 552 (net.ipv4.route.min_pmtu), so that a forged message cannot shrink a
// peer's traffic to nothing, and neither does this.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "core/be32.h"
#include "core/route_table.h"
#include "core/unique_fd.h"
#include "encap/peer_icmp_error.h"

namespace udpring::io {

/// Counts by peer public IP (host order, so that they sort as addresses)
/// and encap::PeerUnreach; those past kMaxPeers in `others`.
struct PeerUnreachCounts {
  static constexpr size_t kMaxPeers = 4096;
  std::map<uint32_t, std::array<uint64_t, encap::kPeerUnreachCount>> by_peer;
  std::array<uint64_t, encap::kPeerUnreachCount> others{};
};

class PeerIcmpWatch {
 public:
  /// Watches for errors about datagrams sent from `local`, from one of
  /// `local_ports`. Throws std::system_error when the raw socket cannot be
  /// opened (EPERM without CAP_NET_RAW).
  /// `tun_mtu`: the largest inner packet with no limit known.
  PeerIcmpWatch(core::Be32 local, std::vector<uint16_t> local_ports, uint32_t tun_mtu);

  /// Reads what has arrived, without waiting (at most 256 messages a call),
  /// and counts and logs those about our datagrams. True when a count changed.
  bool drain();
  const PeerUnreachCounts& counts() const noexcept { return counts_; }

  /// Sets each peer's limit in `table` from the path MTUs learned in the
  /// last 10 minutes (none once expired); true if one changed, and the
  /// caller publishes.
  bool apply_path_limits(core::RouteTable& table);

  static constexpr uint16_t kMinPathMtu = 552;
  static constexpr auto kPathMtuExpiry = std::chrono::minutes(10);

 private:
  void note(const encap::PeerIcmpError& e);
  void learn_path_mtu(const encap::PeerIcmpError& e);

  static constexpr size_t kBatch = 32;
  static constexpr size_t kMessageBytes = 576;  // RFC 1812: no ICMP error is longer
  core::UniqueFd fd_;
  core::Be32 local_;
  std::vector<uint16_t> ports_;
  PeerUnreachCounts counts_;
  std::vector<std::array<uint8_t, kMessageBytes>> bufs_;
  // When each peer was last logged: the first error at once, then at most
  // one line a minute per peer.
  std::map<uint32_t, std::chrono::steady_clock::time_point> logged_;
  // Path MTU by peer (Be32 raw) and when it was last reported.
  struct PathMtu {
    uint16_t mtu;
    std::chrono::steady_clock::time_point seen;
  };
  std::map<uint32_t, PathMtu> path_mtus_;
  uint32_t tun_mtu_;
};

}  // namespace udpring::io
