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

/// True when RFC 1812 §4.3.2.7 allows an error for this (validated) packet:
/// not for ICMP error messages (echo requests do get one; the original
/// refused every ICMP), not for non-first fragments, not for packets to a
/// broadcast or multicast address or from a non-unicast source.
bool icmp_error_allowed(const uint8_t* offender) noexcept;

/// Writes a Net Unreachable for the validated packet `offender` (`len` bytes)
/// into `out` (at least kIcmpUnreachMaxBytes). Returns its length, or 0 when
/// icmp_error_allowed() says no.
size_t build_net_unreachable(const uint8_t* offender, size_t len, core::Be32 src,
                             uint8_t* out) noexcept;

}  // namespace udpring::encap
