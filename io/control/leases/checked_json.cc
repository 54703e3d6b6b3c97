#include "io/control/leases/checked_json.h"

#include <charconv>
#include <limits>

namespace udpring::io {
namespace {

using Json = nlohmann::json;

std::string quoted(std::string_view key) {
  std::string out = "\"";
  out += core::printable(key, 64);
  out += '"';
  return out;
}

// a/an + JSON type name, for messages.
std::string a_type(const Json& v) {
  const std::string t = v.type_name();
  return (t == "object" || t == "array" ? "an " : "a ") + t;
}

// obj[key] of any type; nullptr if absent or null. Throws if obj is not an object.
const Json* any_member(const Json& obj, std::string_view key, const std::string& where) {
  if (!obj.is_object()) {
    throw StoreInputError(where + ": " + a_type(obj) + " where an object with " + quoted(key) +
                          " belongs");
  }
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// any_member() that must be of type `want`.
const Json* member(const Json& obj, std::string_view key, Json::value_t want, const char* want_name,
                   const std::string& where) {
  const Json* it = any_member(obj, key, where);
  if (!it) return nullptr;
  if (it->type() != want) {
    throw StoreInputError(where + ": " + quoted(key) + " is " + a_type(*it) + ", not " + want_name);
  }
  return it;
}

}  // namespace

Json parse_answer(std::string_view text, const core::JsonLimits& limits, const std::string& where) {
  if (const auto why = core::json_limits_exceeded(text, limits)) {
    throw StoreInputError(where + ": the answer " + *why);
  }
  Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    throw StoreInputError(where + ": the answer is not JSON: " + core::printable(text));
  }
  return doc;
}

bool bool_member(const Json& obj, std::string_view key, bool absent, const std::string& where) {
  const Json* v = member(obj, key, Json::value_t::boolean, "a boolean", where);
  return v ? v->get<bool>() : absent;
}

std::string string_member(const Json& obj, std::string_view key, const std::string& where,
                          std::string_view absent) {
  const Json* v = member(obj, key, Json::value_t::string, "a string", where);
  return v ? v->get<std::string>() : std::string(absent);
}

const Json& object_member(const Json& obj, std::string_view key, const std::string& where) {
  static const Json kEmpty = Json::object();
  const Json* v = member(obj, key, Json::value_t::object, "an object", where);
  return v ? *v : kEmpty;
}

const Json& array_member(const Json& obj, std::string_view key, const std::string& where) {
  static const Json kEmpty = Json::array();
  const Json* v = member(obj, key, Json::value_t::array, "an array", where);
  return v ? *v : kEmpty;
}

int64_t int64_member(const Json& obj, std::string_view key, const std::string& where,
                     int64_t absent) {
  const Json* it = any_member(obj, key, where);
  if (!it) return absent;
  if (it->is_number_integer()) {  // signed or unsigned
    if (it->is_number_unsigned() &&
        it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw StoreInputError(where + ": " + quoted(key) + " " + excerpt(*it) + " is out of range");
    }
    return it->get<int64_t>();
  }
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty()) return value;
    throw StoreInputError(where + ": " + quoted(key) + " " + excerpt(*it) +
                          " is not a 64-bit integer");
  }
  throw StoreInputError(where + ": " + quoted(key) + " is " + a_type(*it) +
                        ", not an integer (or a string of one)");
}

const Json& object_item(const Json& item, std::string_view what, const std::string& where) {
  if (!item.is_object()) {
    throw StoreInputError(where + ": " + std::string(what) + " is " + a_type(item) +
                          ", not an object");
  }
  return item;
}

std::string excerpt(const Json& v, size_t max) {
  // Parsed text is valid UTF-8, but a value built from decoded bytes may
  // not be: replace rather than throw.
  return core::printable(v.dump(-1, ' ', false, Json::error_handler_t::replace), max);
}

}  // namespace udpring::io
