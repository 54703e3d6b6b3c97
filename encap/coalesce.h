#pragma once
// Merging consecutive segments of one TCP (or UDP) flow, received as
// separate datagrams, into one GSO packet written to a TUN with
// IFF_VNET_HDR (UDP -> TUN). Only the first packet's headers are rewritten;
// the others are written from their payload on, in place.

#include <cstddef>
#include <cstdint>
#include <span>

#include "encap/packet_ref.h"
#include "encap/vnet_hdr.h"

namespace udpring::encap {

/// A run of consecutive packets to write to the TUN as one.
struct CoalescedRun {
  uint32_t first = 0;   // index into the packets passed to plan_coalescing
  uint32_t count = 0;   // 1 = write the packet as it is (with a zero VnetHdr)
  VnetHdr vnet{};       // header to write in front of the run

  /// Where the payload starts in every packet of the run but the first (whose
  /// headers, rewritten, lead the GSO packet). Runs merge only packets with
  /// the same header shape (IPv4 without options and, for TCP, one data
  /// offset), so this is the run's header length.
  size_t payload_offset() const noexcept { return vnet.hdr_len; }
};

/// Groups `pkts` (validated IPv4 packets, in arrival order) into runs and
/// rewrites the first packet of each multi-packet run so that
/// [vnet][first packet][payloads of the others] is one TCP GSO packet: IP
/// total length and checksum, TCP PSH from the last segment, and the
/// pseudo-header sum in the TCP checksum field (NEEDS_CSUM). Merged segments
/// are consecutive packets of one flow (addresses, ports, ACK number, TOS,
/// TTL, DF, TCP options), ACK or ACK|PSH only, PSH only at the end, adjacent
/// sequence numbers, equal payload sizes but the last, whose TCP checksums
/// verify (the kernel would not check them again), total <= 65535 bytes and
/// at most `max_run` segments. `runs` must be as long as `pkts`.
/// With `udp`, runs of one UDP flow (addresses, ports, TOS, TTL, DF; equal
/// sizes but the last; checksums verified unless zero) are merged too, as
/// UDP_L4 GSO packets; only pass it when the TUN accepted USO offload.
/// A packet marked outer_checksum_verified is not summed again: the UDP
/// checksum the kernel validated covers all of its bytes.
struct CoalescePlan {
  size_t runs = 0;               // entries written to `runs`
  size_t checksum_failures = 0;  // segments that would have merged but failed verification
};
CoalescePlan plan_coalescing(std::span<const PacketRef> pkts, uint32_t max_run,
                                 std::span<CoalescedRun> runs, bool udp = false) noexcept;

/// True when the UDP checksum of a UDP/IPv4 packet verifies or is 0 (none).
bool udp_checksum_ok(const uint8_t* pkt, size_t len) noexcept;

/// True when the TCP checksum of a TCP/IPv4 packet verifies.
bool tcp_checksum_ok(const uint8_t* pkt, size_t len) noexcept;

}  // namespace udpring::encap
