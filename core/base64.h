#pragma once
// Standard base64 (RFC 4648, with padding): etcd's JSON gateway carries every
// key and value as base64 bytes.

#include <optional>
#include <string>
#include <string_view>

namespace udpring::core {

std::string base64_encode(std::string_view bytes);

/// nullopt on characters outside the alphabet or a bad length/padding.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace udpring::core
