#pragma once
// ICMP Destination Unreachable / Net Unreachable (type 3, code 0), built the
// way flannel's proxy builds it: IP TTL 8, ID 0, source = the flannel0
// address, quoting the offender's IP header (with options) plus the first 8
// bytes of its payload. It is written back into the TUN for the local sender.

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

/// Writes a Net Unreachable for `offender` (`len` bytes: a validated packet,
/// or a super-packet of at least 20 bytes with version 4) into `out` (at
/// least kIcmpUnreachMaxBytes). Returns its length, or 0 when
/// icmp_error_allowed() says no. Never reads past `len`.
size_t build_net_unreachable(const uint8_t* offender, size_t len, core::Be32 src,
                             uint8_t* out) noexcept;

}  // namespace udpring::encap
