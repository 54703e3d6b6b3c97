#pragma once
// JSON from a lease store's server, read defensively: parsed only within
// size and depth limits (core/json_limits.h), and read through accessors
// that check each member's type. A wrong type is a StoreInputError naming
// the answer and the member, never nlohmann's type_error, which no retry
// catches and which would stop the daemon.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/input_errors.h"
#include "core/json_limits.h"
#include "io/control/leases/lease_store.h"

namespace udpring::io {

/// `text`, an answer from `where` ("etcd http://10.0.0.1:2379/v3/kv/range"),
/// parsed. Throws StoreInputError when it is beyond `limits` or not JSON.
nlohmann::json parse_answer(std::string_view text, const core::JsonLimits& limits,
                            const std::string& where);

// Members of `obj`, an object from `where`, by type: an absent or null
// member is the default. Each throws StoreInputError naming `where` and
// `key` when `obj` is not an object or the member is of another type.
bool bool_member(const nlohmann::json& obj, std::string_view key, bool absent,
                 const std::string& where);
std::string string_member(const nlohmann::json& obj, std::string_view key, const std::string& where,
                          std::string_view absent = "");
/// An empty object when absent.
const nlohmann::json& object_member(const nlohmann::json& obj, std::string_view key,
                                    const std::string& where);
/// An empty array when absent.
const nlohmann::json& array_member(const nlohmann::json& obj, std::string_view key,
                                   const std::string& where);
/// An int64 as etcd's gateway writes one (a JSON string of decimal digits)
/// or a JSON integer; `absent` when absent.
int64_t int64_member(const nlohmann::json& obj, std::string_view key, const std::string& where,
                     int64_t absent = 0);

/// An element of an array that must be an object: `item` itself, or a
/// StoreInputError naming `where` and `what` ("an event").
const nlohmann::json& object_item(const nlohmann::json& item, std::string_view what,
                                  const std::string& where);

/// At most `max` bytes of v.dump(), printable: for quoting an answer in an error.
std::string excerpt(const nlohmann::json& v, size_t max = 200);

/// Runs `f` and returns what it returns. A StoreInputError from it, or any
/// nlohmann exception (a type no accessor checked: a bug, but no reason to
/// stop the daemon), is counted under `source` in `errors` (if not null) and
/// thrown on as a StoreInputError.
template <class F>
decltype(auto) counting_input_errors(core::InputErrors* errors, core::InputSource source,
                                     const std::string& where, F&& f) {
  try {
    return f();
  } catch (const StoreInputError&) {
    if (errors) errors->count(source);
    throw;
  } catch (const nlohmann::json::exception& e) {
    if (errors) errors->count(source);
    throw StoreInputError(where + ": malformed answer (" + e.what() + ")");
  }
}

}  // namespace udpring::io
