#include "core/json_limits.h"

namespace udpring::core {

std::optional<std::string> json_limits_exceeded(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return "is " + std::to_string(text.size()) + " bytes, more than " +
           std::to_string(limits.max_bytes);
  }
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped byte cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limits.max_depth) {
        return "nests arrays and objects more than " + std::to_string(limits.max_depth) + " deep";
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // unbalanced text is the parser's to reject
    }
  }
  return std::nullopt;
}

std::string printable(std::string_view text, size_t max) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char ch : text.substr(0, max)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace udpring::core
