#include "io/control/leases/etcd_messages.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <set>

#include "core/base64.h"
#include "core/json_limits.h"
#include "io/control/leases/checked_json.h"

namespace udpring::io {
namespace {

using Json = nlohmann::json;

// Each bad key is reported (and counted) once, however often it is listed
// or watched (`id`: the key and its problem). True the first time. The set
// is bounded: a flood of bad keys may be reported again, never fill memory.
bool warn_bad_key(const std::string& id, const std::string& message) {
  static std::mutex mu;
  static std::set<std::string> warned;
  std::lock_guard lock(mu);
  if (warned.size() >= 4096) warned.clear();
  if (!warned.insert(id).second) return false;
  spdlog::warn("{}", message);
  return true;
}

// A base64 member of a kv (a key or a value): the bytes.
std::string unb64(const Json& kv, std::string_view member, const std::string& where) {
  auto bytes = core::base64_decode(string_member(kv, member, where));
  if (!bytes) throw StoreInputError(where + ": a kv's \"" + std::string(member) + "\" is not base64");
  return *bytes;
}

// A revision a watch may resume after: the store adds one to it.
int64_t revision(const Json& obj, std::string_view member, const std::string& where) {
  const int64_t r = int64_member(obj, member, where);
  if (r < 0 || r == std::numeric_limits<int64_t>::max()) {
    throw StoreInputError(where + ": \"" + std::string(member) + "\" " + std::to_string(r) +
                          " is not a revision");
  }
  return r;
}

}  // namespace

std::optional<core::Lease> lease_from_kv(const Json& kv, const std::string& where,
                                         core::InputErrors* errors) {
  const auto count = [errors] {
    if (errors) errors->count(core::InputSource::kEtcd);
  };
  std::string key, value;
  int64_t lease = 0, created = 0;
  try {
    object_item(kv, "a kv", where);
    key = unb64(kv, "key", where);
    value = unb64(kv, "value", where);
    lease = int64_member(kv, "lease", where);
    created = int64_member(kv, "create_revision", where);
  } catch (const StoreInputError& e) {
    if (warn_bad_key(e.what(), std::string("skipping an etcd kv: ") + e.what())) count();
    return std::nullopt;
  }
  const auto subnet = core::parse_lease_key(key);
  const auto parsed = subnet ? core::parse_lease_value(value) : std::nullopt;
  if (!subnet || !parsed) {
    const char* why = !subnet ? "not a.b.c.d-len" : "value is not a lease (no PublicIP, or over 4 KiB)";
    if (warn_bad_key(key + '\0' + why, "skipping etcd key " + core::printable(key) + ": " + why)) {
      count();
    }
    return std::nullopt;
  }
  core::Lease l;
  l.subnet = *subnet;
  l.public_ip = parsed->public_ip;
  l.backend_type = parsed->backend_type;
  l.store_lease = lease;
  l.reservation = l.store_lease == 0;
  l.key = key;
  // Kept across puts (renewals, reuse); a deleted and re-created key gets
  // a new one. Keys created in one txn share it (then the key decides).
  l.created = created;
  return l;
}

EtcdListing parse_listing(const Json& answer, const std::string& where, core::InputErrors* errors) {
  EtcdListing out;
  out.revision = revision(object_member(answer, "header", where), "revision", where);
  for (const Json& kv : array_member(answer, "kvs", where)) {
    if (auto l = lease_from_kv(kv, where, errors)) out.leases.push_back(*l);
  }
  return out;
}

WatchMessage parse_watch_message(const Json& msg, core::LeaseMap& known, int64_t& next_rev,
                                 const std::string& where, core::InputErrors* errors) {
  WatchMessage m;
  if (const auto it = object_item(msg, "a message", where).find("error"); it != msg.end()) {
    m.kind = WatchMessage::Kind::kError;
    m.error = excerpt(*it);
    return m;
  }
  const Json& r = object_member(msg, "result", where);
  if (int64_member(r, "compact_revision", where) > 0) {
    m.kind = WatchMessage::Kind::kCompacted;
    return m;
  }
  if (bool_member(r, "canceled", false, where)) {
    m.kind = WatchMessage::Kind::kCanceled;
    m.error = core::printable(string_member(r, "cancel_reason", where));
    return m;
  }
  const Json& events = array_member(r, "events", where);
  // Every member read below is checked here first, so that a malformed
  // message throws before anything is applied: the watch then resumes at
  // next_rev, and no event is lost.
  int64_t rev = next_rev;
  for (const Json& item : events) {
    const Json& kv = object_member(object_item(item, "an event", where), "kv", where);
    rev = std::max(rev, revision(kv, "mod_revision", where) + 1);
    string_member(item, "type", where);
    string_member(kv, "key", where);
  }
  m.created = bool_member(r, "created", false, where);
  next_rev = rev;
  for (const Json& ev : events) {
    const Json& kv = object_member(ev, "kv", where);
    const auto key = core::base64_decode(string_member(kv, "key", where));
    if (!key) continue;
    std::optional<core::Lease> put;
    if (string_member(ev, "type", where, "PUT") != "DELETE") put = lease_from_kv(kv, where, errors);
    if (put) {
      m.events.push_back({core::LeaseEvent::Kind::kAdded, *put});
    } else if (const auto it = known.find(*key); it != known.end()) {
      // Deleted, or overwritten with something that is not a lease.
      m.events.push_back({core::LeaseEvent::Kind::kRemoved, it->second});
    } else {
      continue;  // a key we never took for a lease: nothing to undo
    }
    core::apply_event(known, m.events.back());
  }
  return m;
}

}  // namespace udpring::io
