#pragma once
// IPv4 addresses and prefixes as text: parsing and printing for flags, config
// files and logs. Control plane only.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/be32.h"

namespace udpring::core {

/// Parses dotted-quad text ("10.5.0.1"); nullopt on anything else.
std::optional<Be32> parse_ipv4(std::string_view text);

/// Dotted-quad text of an address.
std::string format_ipv4(Be32 addr);

/// An IPv4 prefix with its host bits cleared.
struct Ipv4Prefix {
  Be32 network;
  uint8_t length = 0;  // 0..32

  /// Mask for a prefix length; defined for 0 (the original's netmask(0) was UB).
  static uint32_t host_mask(uint8_t length) noexcept {
    return length == 0 ? 0u : ~uint32_t{0} << (32 - length);
  }
  bool contains(Be32 addr) const noexcept {
    return ((addr.host() ^ network.host()) & host_mask(length)) == 0;
  }
  bool contains(const Ipv4Prefix& other) const noexcept {
    return other.length >= length && contains(other.network);
  }
  friend bool operator==(const Ipv4Prefix&, const Ipv4Prefix&) = default;
};

/// Parses "a.b.c.d/len"; host bits are masked off (as flannel's ip.IP4Net does).
std::optional<Ipv4Prefix> parse_prefix(std::string_view text);

/// "a.b.c.d/len".
std::string format_prefix(const Ipv4Prefix& prefix);

}  // namespace udpring::core
