#pragma once
// How many times a text holds a string: a log line said once, a metric
// family listed once. Header-only, for unit and integration tests alike.

#include <cstddef>
#include <string>

namespace udpring::test {

/// Occurrences of `what` in `text`, overlapping ones included.
inline size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace udpring::test
