#pragma once
// TUN -> UDP: which packets of an encapsulated batch leave together as one
// UDP GSO sendmsg (a "train"). On the wire each packet is still a datagram
// of its own, so a train only batches the syscall and the kernel's work.

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/route_table.h"
#include "encap/packet_ref.h"
#include "encap/udp_encap.h"

namespace udpring::encap {

/// UDP GSO limits: UDP_MAX_SEGMENTS was 64 before Linux 6.9 (then 128), and
/// an IPv4 datagram carries at most 65535 - 20 - 8 bytes.
inline constexpr uint32_t kMaxGsoSegments = 64;
inline constexpr uint32_t kMaxGsoBytes = 65507;

/// Consecutive packets of one batch that go to one peer in one sendmsg.
struct GsoTrain {
  uint32_t first = 0;      // index of its first packet in the batch
  uint32_t count = 0;      // packets (datagrams) in it
  uint32_t seg_bytes = 0;  // size of every datagram but the last (UDP_SEGMENT)
};

/// Groups the kSend packets of `pkts` (verdicts in `results`) into trains:
/// consecutive packets to one peer (address and port), each as long as the
/// first but the last, which may be shorter and then ends the train; at most
/// `max_segments` packets (1 = no GSO: one train per packet) and
/// kMaxGsoBytes bytes. A dropped packet ends a train. Packet order is kept.
/// `out` must be as long as `pkts`; returns the number of trains written.
size_t group_gso_trains(std::span<const PacketRef> pkts, std::span<const EncapResult> results,
                        uint32_t max_segments, std::span<GsoTrain> out) noexcept;

/// A train filled one datagram at a time across reads (the segments of TSO
/// super-packets): a 64 KiB super-packet does not fit one UDP GSO send (its
/// segments' own headers take it past kMaxGsoBytes), so the train stays
/// open for the next super-packet to the same peer.
struct OpenTrain {
  core::NextHop hop;
  uint32_t seg_bytes = 0;  // size of every datagram but the last
  uint32_t datagrams = 0;
  uint32_t bytes = 0;

  /// May a datagram of `bytes` to `to`, from a split cut at `seg`, join?
  bool accepts(const core::NextHop& to, uint32_t seg, uint32_t bytes_more) const noexcept {
    return hop == to && seg_bytes == seg && datagrams < kMaxGsoSegments &&
           bytes + bytes_more <= kMaxGsoBytes;
  }
  /// Counts a datagram in; true when it closes the train (only the last
  /// datagram of a GSO send may be shorter than the others).
  bool add(uint32_t bytes_more) noexcept {
    ++datagrams;
    bytes += bytes_more;
    return bytes_more < seg_bytes;
  }
};

}  // namespace udpring::encap
