#pragma once
// A 32-bit value in network byte order, kept as its own type so that host and
// network order can never be mixed up silently.

#include <arpa/inet.h>

#include <compare>
#include <cstdint>

namespace udpring::core {

struct Be32 {
  uint32_t raw = 0;  // network byte order, exactly as on the wire

  static constexpr Be32 from_raw(uint32_t r) noexcept { return Be32{r}; }
  static Be32 from_host(uint32_t h) noexcept { return Be32{htonl(h)}; }
  uint32_t host() const noexcept { return ntohl(raw); }

  friend constexpr bool operator==(Be32, Be32) = default;
};

}  // namespace udpring::core
