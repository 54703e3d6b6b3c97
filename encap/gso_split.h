#pragma once
// Cutting a TSO or USO super-packet read from a TUN with IFF_VNET_HDR into
// MTU-sized segments (TUN -> UDP), as the kernel's GSO would. Only headers
// are written; every segment's payload is a slice of the super-packet.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace udpring::encap {

/// Header bytes reserved per segment in a split: IPv4 (<= 60) + TCP (<= 60).
inline constexpr size_t kSegHdrSlotBytes = 128;

/// The most segments a worker cuts one super-packet into: 64 KiB with an MSS
/// as small as 512 bytes. The TUN is told (gso_max_segs), so that the kernel
/// cuts anything bigger itself before the read.
inline constexpr uint32_t kMaxTsoSegments = 128;

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

}  // namespace udpring::encap
