#pragma once
// What etcd's v3 JSON gateway answers, read as leases without I/O: the kvs
// of a range over the subnets prefix, and the messages of a watch on it.
// The etcd store (etcd_lease_store.cc) makes the requests; these are the
// bytes an etcd (or whoever answers in its place) controls, so they are
// fuzzed on their own (tests/fuzz/etcd_fuzz.cc).
//
// A malformed answer or message (a member of the wrong type, a revision out
// of range) throws StoreInputError before anything is applied, which the
// store retries like an outage; a kv that is no lease is skipped, warned
// about once and counted.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/input_errors.h"
#include "core/lease.h"

namespace udpring::io {

/// A kv of an answer from `where` as a lease; nullopt (warned once per key
/// and problem, counted in `errors` if given) when it is not one.
std::optional<core::Lease> lease_from_kv(const nlohmann::json& kv, const std::string& where,
                                         core::InputErrors* errors);

/// A range answer over the subnets prefix.
struct EtcdListing {
  std::vector<core::Lease> leases;  // the kvs that are leases, in key order
  int64_t revision = 0;             // header.revision, in [0, INT64_MAX): a watch resumes after it
};
EtcdListing parse_listing(const nlohmann::json& answer, const std::string& where,
                          core::InputErrors* errors);

/// One message of a /v3/watch stream.
struct WatchMessage {
  enum class Kind { kEvents, kError, kCompacted, kCanceled };
  Kind kind = Kind::kEvents;
  std::string error;     // kError: the error object; kCanceled: etcd's reason
  bool created = false;  // kEvents: the answer to the create request
  std::vector<core::LeaseEvent> events;  // kEvents: the lease changes, in order
};

/// Reads `msg`. Its events are applied to `known` (a DELETE carries no
/// value: the lease removed is the one `known` has) and `next_rev` moves
/// past each event's mod_revision; neither changes when it throws.
WatchMessage parse_watch_message(const nlohmann::json& msg, core::LeaseMap& known,
                                 int64_t& next_rev, const std::string& where,
                                 core::InputErrors* errors);

}  // namespace udpring::io
