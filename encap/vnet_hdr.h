#pragma once
// The virtio_net_hdr a TUN opened with IFF_VNET_HDR puts in front of every
// packet it reads and expects in front of every write, and the partial
// checksum it may leave for us to finish.

#include <cstddef>
#include <cstdint>

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
/// Completes a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM): the ones'
/// complement sum from csum_start to the end, seeded by the pseudo-header sum
/// the kernel left at csum_start + csum_offset, stored inverted there.
/// Returns false (packet untouched) when the offsets do not fit `len`.
bool finish_checksum(uint8_t* pkt, size_t len, uint16_t csum_start, uint16_t csum_offset) noexcept;

}  // namespace udpring::encap
