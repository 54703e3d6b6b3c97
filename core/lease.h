#pragma once
// flannel's subnet leases: the key and value formats every flannel node
// reads and writes (etcd and the file store use the same ones), and the pure
// decisions of the lease lifecycle — which subnet to take, and which events a
// re-listed lease set implies. No I/O here, so all of it is unit-tested.
//
// Keys:   <prefix>/subnets/10.5.34.0-24
// Values: {"PublicIP":"192.168.1.10","PublicIPv6":null}   (a udp node's)

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/ipv4_addr.h"
#include "core/json_limits.h"
#include "core/net_config.h"

namespace udpring::core {

/// flannel's etcd key prefix default (--etcd-prefix).
inline constexpr std::string_view kDefaultEtcdPrefix = "/coreos.com/network";
/// flannel's lease TTL (subnetTTL): 24 h.
inline constexpr int64_t kDefaultLeaseTtlSeconds = 86400;
/// flannel's raceRetries: attempts at creating a lease before giving up.
inline constexpr int kAcquireAttempts = 10;
/// flannel collects at most this many free subnets and picks one at random.
inline constexpr size_t kMaxCandidates = 100;

/// One lease as a store holds it.
struct Lease {
  Ipv4Prefix subnet;
  Be32 public_ip;            // where the owner receives encapsulated traffic
  std::string backend_type;  // "" for udp nodes (they write none); ignored for routing
  int64_t store_lease = 0;   // etcd lease ID (file store: 0); 0 = a reservation (etcd)
  int64_t expiry_unix = 0;   // seconds since the epoch; 0 = never expires
  bool reservation = false;  // a key with no TTL: never renewed, converted or deleted
  // The store's name for the lease, unique in it: the etcd key, the lease
  // file's name, the Node's name, the flag. Two leases may claim one subnet
  // (etcd "a.b.c.d-len" and "a.b.c.d-len&ipv6-len" keys, two Nodes with
  // one podCIDR), so the subnet cannot be the identity. "" = known by its
  // subnet (lease_id).
  std::string key;
  // Where the lease stands in its store's creation order, for "the earlier
  // lease wins an overlap" (core/lease_policy.h): the etcd create_revision,
  // the lease file's birth time (ns), the Node's creationTimestamp (s), the
  // flag's position. Only compared within one store; ties go by key.
  int64_t created = 0;

  friend bool operator==(const Lease&, const Lease&) = default;
};

/// "<prefix>/subnets/" — every lease key starts with it.
std::string subnets_prefix(std::string_view etcd_prefix);
/// "<prefix>/subnets/a.b.c.d-len".
std::string lease_key(std::string_view etcd_prefix, const Ipv4Prefix& subnet);
/// The last component's "a.b.c.d-len" (an "&ipv6-len" suffix is allowed and
/// ignored, as a dual-stack key); nullopt when it does not parse. Host bits
/// set or a length above 32 do not parse either: no flannel writes them.
std::optional<Ipv4Prefix> parse_lease_key(std::string_view key);

/// The exact compact JSON a stock udp node (flannel >= 0.15) writes.
std::string format_lease_value(Be32 public_ip);

/// PublicIP and BackendType of a lease value (keys case-insensitive, nulls
/// and unknown fields tolerated). nullopt if it is not JSON, has no IPv4
/// PublicIP or is beyond kLeaseValueLimits (a vxlan node's value, the
/// largest flannel writes, is about 150 bytes and two levels deep).
inline constexpr JsonLimits kLeaseValueLimits{4096, 8};
struct LeaseValue {
  Be32 public_ip;
  std::string backend_type;
};
std::optional<LeaseValue> parse_lease_value(std::string_view json);

/// A subnet a config allows this node to hold: base in [SubnetMin,
/// SubnetMax] and length == SubnetLen.
bool subnet_compatible(const NetConfig& cfg, const Ipv4Prefix& subnet);

/// What acquire should do, decided from the current lease list (flannel's
/// order, with its bugs fixed):
///  1. a lease whose PublicIP is ours: reuse it if compatible (a
///     reservation as it is, never converted) and routable by
///     core::judge_leases (one that loses an overlap is never ours: every
///     node routes its subnet to the earlier lease), else delete it if it
///     is incompatible (never a reservation) and go on;
///  2. the subnet from the previous subnet.env if it is free and compatible;
///  3. a random pick among the first <= 100 free compatible subnets.
/// "Free": no lease in the list has exactly that subnet (its key exists,
/// and flannel checks exactly that), and no lease that judge_leases
/// accepts overlaps it. A refused lease holds nothing but its own key: it
/// is never routed by us, so a 0.0.0.0/0 or whole-Network lease does not
/// block allocation. (A stock flanneld node, which checks exact keys only,
/// agrees: it never sees such a lease as a conflict either.)
struct AcquirePlan {
  enum class Kind { kReuse, kCreate, kExhausted };
  Kind kind = Kind::kExhausted;
  Ipv4Prefix subnet;
  std::optional<Lease> existing;        // kReuse: the lease found
  std::vector<Ipv4Prefix> remove;       // our incompatible leases to delete first
  std::string reason;                   // for the log: why this subnet
};
AcquirePlan plan_acquisition(const NetConfig& cfg, Be32 public_ip,
                             const std::optional<Ipv4Prefix>& previous,
                             std::span<const Lease> leases, uint64_t random);

/// A change in the lease set as watchers see it.
struct LeaseEvent {
  enum class Kind { kAdded, kRemoved };
  Kind kind;
  Lease lease;
};

/// A lease's identity in its store: its key, or "a.b.c.d-len" without one.
std::string lease_id(const Lease& l);

/// Leases by lease_id: the set a watcher knows.
using LeaseMap = std::map<std::string, Lease>;
/// A prefix as one ordered number (address, then length).
uint64_t lease_map_key(const Ipv4Prefix& p);

/// The events that turn `known` into `current` (after a re-list): Removed
/// for vanished leases, Added for new or changed ones. Updates `known`.
std::vector<LeaseEvent> diff_leases(LeaseMap& known, std::span<const Lease> current);

/// Applies one event to `known`.
void apply_event(LeaseMap& known, const LeaseEvent& ev);

}  // namespace udpring::core

namespace udpring::core {

/// What a store's watch delivers: either the complete set (the first batch,
/// and after a re-list) or incremental events.
struct LeaseUpdate {
  bool reset = false;
  std::vector<Lease> leases;       // reset: every lease the store holds
  std::vector<LeaseEvent> events;  // !reset: changes in order
};

/// Health of a lease store, for /metrics and logs.
struct LeaseStoreStatus {
  int64_t own_expiry_unix = 0;     // 0 = never (a reservation) or not acquired
  uint64_t renewals = 0;           // successful renewals of our lease
  uint64_t renew_failures = 0;
  uint64_t watch_reconnects = 0;   // watch streams re-established after an error
  uint64_t relists = 0;            // full re-lists (etcd compaction, file rescans)
  bool watch_connected = false;
};

/// When to renew a lease that expires at `expiry_unix`: `margin_s` before
/// (flannel's --subnet-lease-renew-margin), or half-way through when the TTL
/// is not longer than the margin (short test TTLs).
int64_t renew_time(int64_t expiry_unix, int64_t ttl_s, int64_t margin_s);

}  // namespace udpring::core
