#pragma once
// The ICMP errors udpringd sends, built the way flannel's proxy builds its
// Net Unreachable: IP TTL 8, ID 0, source = the flannel0 address, quoting the
// offender's IP header (with options) plus the first 8 bytes of its payload.
// One for a local pod is written back into the TUN; one for a remote pod is
// sent to its node, as any packet to that pod would be.

#include <cstddef>
#include <cstdint>

#include "core/be32.h"

namespace udpring::encap {

inline constexpr uint8_t kIcmpNetUnreachTtl = 8;
/// Largest message: 20 (IP) + 8 (ICMP) + 60 (quoted header) + 8 (payload).
inline constexpr size_t kIcmpUnreachMaxBytes = 96;

/// True when RFC 1812 §4.3.2.7 allows an error for the packet whose first
/// `len` bytes are at `offender`: not for ICMP error messages (echo
/// requests do get one; the original refused every ICMP), not for
/// non-first fragments, not for packets to a broadcast or multicast
/// address or from a non-unicast source, and not when its IP header is not
/// all within `len` (a TSO super-packet reaches here unvalidated).
bool icmp_error_allowed(const uint8_t* offender, size_t len) noexcept;

/// Which error, and its ICMP type and code.
enum class IcmpError : uint8_t {
  kNetUnreachable,  // type 3 code 0: no lease covers the destination
  kTimeExceeded,    // type 11 code 0: the TTL ran out at this hop (traceroute)
  kFragmentationNeeded,  // type 3 code 4: DF set, and the path to the peer carries less
};

/// Writes `kind` for `offender` (as build_net_unreachable), from `src`.
/// `next_hop_mtu` is what a Fragmentation Needed tells (RFC 1191); the
/// other kinds ignore it.
size_t build_icmp_error(IcmpError kind, const uint8_t* offender, size_t len, core::Be32 src,
                        uint8_t* out, uint16_t next_hop_mtu = 0) noexcept;

/// Writes a Net Unreachable for `offender` (`len` bytes: a validated packet,
/// or a super-packet of at least 20 bytes with version 4) into `out` (at
/// least kIcmpUnreachMaxBytes). Returns its length, or 0 when
/// icmp_error_allowed() says no. Never reads past `len`.
size_t build_net_unreachable(const uint8_t* offender, size_t len, core::Be32 src,
                             uint8_t* out) noexcept;

}  // namespace udpring::encap
