#pragma once
// Field lookup the way Go's encoding/json does it, for the JSON flannel
// writes (net-conf, lease values): names match case-insensitively and a
// null value counts as absent. Private to core's .cc files (nlohmann/json is
// not part of core's public interface).

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <string_view>

namespace udpring::core::json_fields {

inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

/// The first member named `key` in any letter case with a non-null value.
inline const nlohmann::json* find_ci(const nlohmann::json& obj, std::string_view key) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (iequals(it.key(), key) && !it->is_null()) return &*it;
  }
  return nullptr;
}

}  // namespace udpring::core::json_fields
