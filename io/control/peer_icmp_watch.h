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

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "core/be32.h"
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
  PeerIcmpWatch(core::Be32 local, std::vector<uint16_t> local_ports);

  /// Reads what has arrived, without waiting (at most 256 messages a call),
  /// and counts and logs those about our datagrams. True when a count changed.
  bool drain();
  const PeerUnreachCounts& counts() const noexcept { return counts_; }

 private:
  void note(const encap::PeerIcmpError& e);

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
};

}  // namespace udpring::io
