#pragma once
// TCP offload helpers for a TUN opened with IFF_VNET_HDR: finishing partial
// checksums, cutting a TSO super-packet read from the TUN into MTU-sized
// segments (TUN -> UDP), and merging consecutive segments of one TCP flow
// into one GSO packet written to the TUN (UDP -> TUN). Pure functions over
// caller-owned buffers: payload bytes are never copied, only headers.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "encap/packet_ref.h"

namespace udpring::encap {

/// struct virtio_net_hdr (10 bytes, native byte order: legacy virtio on a TUN
/// without TUNSETVNETLE/BE). Declared here so encap needs no kernel headers.
struct VnetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(VnetHdr) == 10);

inline constexpr size_t kVnetHdrBytes = sizeof(VnetHdr);
inline constexpr uint8_t kVnetFlagNeedsCsum = 1;
inline constexpr uint8_t kVnetGsoNone = 0;
inline constexpr uint8_t kVnetGsoTcpV4 = 1;
inline constexpr uint8_t kVnetGsoUdpL4 = 5;  // VIRTIO_NET_HDR_GSO_UDP_L4 (USO, Linux 6.2)
inline constexpr uint8_t kVnetGsoEcn = 0x80;
/// Header bytes reserved per segment in a split: IPv4 (<= 60) + TCP (<= 60).
inline constexpr size_t kSegHdrSlotBytes = 128;

/// Completes a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM): the ones'
/// complement sum from csum_start to the end, seeded by the pseudo-header sum
/// the kernel left at csum_start + csum_offset, stored inverted there.
/// Returns false (packet untouched) when the offsets do not fit `len`.
bool finish_checksum(uint8_t* pkt, size_t len, uint16_t csum_start, uint16_t csum_offset) noexcept;

enum class TsoStatus : uint8_t { kOk, kMalformed, kTtlExpired, kTooManySegments };

/// Result of cutting one TSO super-packet.
struct TsoSplit {
  TsoStatus status = TsoStatus::kMalformed;
  uint32_t segments = 0;   // valid with kOk
  uint32_t seg_bytes = 0;  // size of every segment but the last (headers + gso_size)
};

/// Cuts the TCP/IPv4 super-packet `pkt` (`len` bytes, IP header first) into
/// segments of `gso_size` payload bytes, as the kernel's tcp_gso_segment
/// would: per segment a copy of the IP and TCP headers in
/// hdr_scratch[k * kSegHdrSlotBytes] (total length, ID + k, seq + k*gso_size,
/// FIN/PSH only on the last, CWR only on the first, TTL - 1 as flannel does,
/// fresh IP and TCP checksums) and two iovecs, iov[2k] = that header and
/// iov[2k+1] = the payload slice inside `pkt`. At most `max_segments`
/// segments; the status says why nothing was produced otherwise. `hdr_scratch` must hold max_segments slots
/// and `iov` 2 * max_segments entries.
TsoSplit tso_split_v4(uint8_t* pkt, size_t len, uint16_t gso_size, uint8_t* hdr_scratch,
                      size_t max_segments, iovec* iov) noexcept;

/// The same for a UDP/IPv4 super-packet (USO, gso_type UDP_L4): per segment
/// a copy of the IP and UDP headers (total length, ID + k, TTL - 1, UDP
/// length, full UDP checksum) and the payload slice.
TsoSplit uso_split_v4(uint8_t* pkt, size_t len, uint16_t gso_size, uint8_t* hdr_scratch,
                      size_t max_segments, iovec* iov) noexcept;

/// A run of consecutive packets to write to the TUN as one.
struct CoalescedRun {
  uint32_t first = 0;   // index into the packets passed to plan_tcp_coalescing
  uint32_t count = 0;   // 1 = write the packet as it is (with a zero VnetHdr)
  VnetHdr vnet{};       // header to write in front of the run
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
CoalescePlan plan_tcp_coalescing(std::span<const PacketRef> pkts, uint32_t max_run,
                                 std::span<CoalescedRun> runs, bool udp = false) noexcept;

/// True when the UDP checksum of a UDP/IPv4 packet verifies or is 0 (none).
bool udp_checksum_ok(const uint8_t* pkt, size_t len) noexcept;

/// True when the TCP checksum of a TCP/IPv4 packet verifies.
bool tcp_checksum_ok(const uint8_t* pkt, size_t len) noexcept;

}  // namespace udpring::encap
