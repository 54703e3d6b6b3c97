#include "core/ipv4_addr.h"

#include <charconv>

namespace udpring::core {

std::optional<Be32> parse_ipv4(std::string_view text) {
  uint32_t value = 0;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (p == end || *p != '.') return std::nullopt;
      ++p;
    }
    if (p == end || *p < '0' || *p > '9') return std::nullopt;
    // Leading zeros would be read as octal by inet_aton; reject them instead.
    if (*p == '0' && p + 1 != end && p[1] >= '0' && p[1] <= '9') return std::nullopt;
    unsigned part = 0;
    auto [next, ec] = std::from_chars(p, end, part);
    if (ec != std::errc{} || part > 255) return std::nullopt;
    value = (value << 8) | part;
    p = next;
  }
  if (p != end) return std::nullopt;
  return Be32::from_host(value);
}

std::string format_ipv4(Be32 addr) {
  const uint32_t h = addr.host();
  std::string out;
  out.reserve(15);
  for (int shift = 24; shift >= 0; shift -= 8) {
    out += std::to_string((h >> shift) & 0xff);
    if (shift) out += '.';
  }
  return out;
}

std::optional<Ipv4Prefix> parse_prefix(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto addr = parse_ipv4(text.substr(0, slash));
  if (!addr) return std::nullopt;
  const auto len_text = text.substr(slash + 1);
  unsigned length = 0;
  auto [next, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), length);
  if (len_text.empty() || ec != std::errc{} || next != len_text.data() + len_text.size() ||
      length > 32) {
    return std::nullopt;
  }
  const auto len8 = static_cast<uint8_t>(length);
  return Ipv4Prefix{Be32::from_host(addr->host() & Ipv4Prefix::host_mask(len8)), len8};
}

std::string format_prefix(const Ipv4Prefix& prefix) {
  return format_ipv4(prefix.network) + "/" + std::to_string(prefix.length);
}

}  // namespace udpring::core
