#pragma once
// IPv4 header access and the per-packet arithmetic of the forwarder: header
// validation, RFC 1071 checksums and the TTL decrement with an RFC 1624
// incremental checksum fix. Everything here works in place on caller-owned
// bytes, never allocates and never copies a payload.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "core/be32.h"
#include "core/ones_sum.h"

namespace udpring::core {

inline constexpr size_t kIpv4MinHeaderBytes = 20;
inline constexpr size_t kIpv4MaxHeaderBytes = 60;
inline constexpr uint8_t kIpProtoIcmp = 1;
inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr uint8_t kIpProtoUdp = 17;

/// Why a packet failed validation. Values index per-reason drop counters.
enum class Ipv4Error : uint8_t {
  kOk = 0,
  kTooShort,       // fewer than 20 bytes, or fewer than IHL*4
  kBadVersion,     // version nibble is not 4 (IPv6, garbage)
  kBadIhl,         // IHL < 5
  kLengthMismatch  // total length field disagrees with the bytes we have
};

/// Read-only and in-place accessors over the first bytes of an IPv4 packet.
/// The view does not own the bytes; callers validate before trusting fields.
class Ipv4View {
 public:
  explicit Ipv4View(uint8_t* data) noexcept : p_(data) {}

  uint8_t version() const noexcept { return p_[0] >> 4; }
  size_t header_bytes() const noexcept { return size_t{p_[0] & 0x0fu} * 4; }
  uint16_t total_length() const noexcept { return load16(2); }
  uint16_t frag_field() const noexcept { return load16(6); }
  /// Fragment offset in 8-byte units (flags masked off).
  uint16_t frag_offset() const noexcept { return frag_field() & 0x1fff; }
  /// The Don't Fragment flag.
  bool dont_fragment() const noexcept { return (frag_field() & 0x4000) != 0; }
  uint8_t ttl() const noexcept { return p_[8]; }
  uint8_t protocol() const noexcept { return p_[9]; }
  uint16_t checksum_be() const noexcept {
    uint16_t v;
    std::memcpy(&v, p_ + 10, 2);
    return v;
  }
  Be32 src() const noexcept { return load_be32(12); }
  Be32 dst() const noexcept { return load_be32(16); }
  uint8_t* data() const noexcept { return p_; }

 private:
  uint16_t load16(size_t off) const noexcept {
    return static_cast<uint16_t>((p_[off] << 8) | p_[off + 1]);
  }
  Be32 load_be32(size_t off) const noexcept {
    Be32 v;
    std::memcpy(&v.raw, p_ + off, 4);
    return v;
  }
  uint8_t* p_;
};

/// Checks that `len` bytes at `data` hold one whole IPv4 packet: version 4,
/// IHL >= 5, IHL*4 <= len, and total length == len. TUN reads and UDP payloads
/// carry exactly one packet, so any difference means a malformed or truncated
/// packet (or trailing garbage), which we drop rather than forward.
inline Ipv4Error validate_ipv4(const uint8_t* data, size_t len) noexcept {
  if (len < kIpv4MinHeaderBytes) return Ipv4Error::kTooShort;
  if ((data[0] >> 4) != 4) return Ipv4Error::kBadVersion;
  const size_t ihl = size_t{data[0] & 0x0fu} * 4;
  if (ihl < kIpv4MinHeaderBytes) return Ipv4Error::kBadIhl;
  if (ihl > len) return Ipv4Error::kTooShort;
  const size_t total = (size_t{data[2]} << 8) | data[3];
  if (total != len) return Ipv4Error::kLengthMismatch;
  return Ipv4Error::kOk;
}

/// The Internet checksum of `len` bytes, in host order, ready to store with htons.
inline uint16_t internet_checksum(const uint8_t* data, size_t len) noexcept {
  return static_cast<uint16_t>(~ones_sum(data, len) & 0xffff);
}

/// Recomputes the header checksum of a validated header in place.
inline void ipv4_set_header_checksum(uint8_t* hdr) noexcept {
  hdr[10] = hdr[11] = 0;
  const uint16_t c = internet_checksum(hdr, size_t{hdr[0] & 0x0fu} * 4);
  hdr[10] = static_cast<uint8_t>(c >> 8);
  hdr[11] = static_cast<uint8_t>(c);
}

/// Decrements the TTL in place and fixes the header checksum incrementally
/// (RFC 1624 eqn. 3, as the kernel's ip_decrease_ttl does), in a byte-order
/// independent way (the original was correct on little-endian hosts only).
/// Returns false, leaving the packet untouched, when the TTL is 0 or 1: the
/// decremented TTL would be 0, so the packet must be dropped. A TTL of 0 is
/// dropped too; the original wrapped it to 255 and forwarded it.
inline bool ipv4_decrement_ttl(uint8_t* hdr) noexcept {
  if (hdr[8] <= 1) return false;
  hdr[8] = static_cast<uint8_t>(hdr[8] - 1);
  // TTL is the high byte of the 16-bit word at offset 8: the word dropped by
  // 0x0100, so the checksum grows by 0x0100 with end-around carry.
  // Folding 0xffff to 0x0000 matches a full recompute, which never yields
  // 0xffff (that would need an all-zero header).
  uint32_t check = (uint32_t{hdr[10]} << 8) | hdr[11];
  check += 0x0100;
  check += check >= 0xffff ? 1u : 0u;
  hdr[10] = static_cast<uint8_t>(check >> 8);
  hdr[11] = static_cast<uint8_t>(check);
  return true;
}

}  // namespace udpring::core
