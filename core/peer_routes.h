#pragma once
// Lease events → the route table (flannel's processSubnetEvents): a peer's
// lease routes its subnet to PublicIP:our port, if core::judge_leases
// accepts it; the node's own lease is never routed, and losing it is
// reported so the daemon can exit as flanneld does ("Lease has been
// revoked"). BackendType is ignored, as flannel's udp backend ignores it.
// Control thread only.
//
// Every update changes the complete set of leases PeerRoutes knows; the
// routes are then recomputed from that set, so a lease refused because an
// earlier one held its subnet is routed as soon as that one goes.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>

#include "core/lease.h"
#include "core/lease_policy.h"
#include "core/route_table.h"

namespace udpring::core {

class PeerRoutes {
 public:
  /// `own`, `own_ip`: our lease and our PublicIP, to tell a renewal of our
  /// lease from a takeover. `policy`: what a peer lease must satisfy.
  PeerRoutes(RouteTable& table, LeasePolicy policy, Ipv4Prefix own, Be32 own_ip, uint16_t port);

  struct Result {
    size_t added = 0;    // routes set (new or changed next hop)
    size_t removed = 0;  // routes deleted
    std::string own_lost;  // non-empty: our lease was deleted, expired or taken
  };
  /// Applies `update` and publishes the table once if anything changed.
  /// Each route change is logged at info level, each new refusal at warn.
  Result apply(const LeaseUpdate& update);
  /// Applies `updates` in order and publishes once: the table is rebuilt
  /// per publish, so a burst of lease events costs one rebuild, not one
  /// per event.
  Result apply(std::span<const LeaseUpdate> updates);

  size_t route_count() const { return routes_.size(); }
  const LeasePolicy& policy() const { return policy_; }

  /// A lease that is not routed, and why.
  struct Refusal {
    Lease lease;
    LeaseRefusal reason;
    std::string winner;  // kOverlap: lease_id of the lease that holds the space
    /// The same refusal: subnet, next hop, reason and winner (a renewal,
    /// which changes expiry and etcd lease, is not a new one).
    bool same(const Refusal& o) const {
      return lease.subnet == o.lease.subnet && lease.public_ip == o.lease.public_ip &&
             reason == o.reason && winner == o.winner;
    }
  };
  /// The leases refused now, by lease_id (our own lease is never one).
  const std::map<std::string, Refusal>& refused() const { return refused_; }
  /// Refusals so far, by reason: each lease counts once per distinct
  /// refusal (a new lease, reason, next hop or winner), not per update.
  const std::array<uint64_t, kLeaseRefusalCount>& refused_total() const { return refused_total_; }
  /// The leases refused now, by reason.
  std::array<uint64_t, kLeaseRefusalCount> refused_now() const;

 private:
  /// Updates known_; true if a verdict may have changed.
  bool apply_one(const LeaseUpdate& update, Result& r);
  void own_added(const Lease& l, Result& r);
  void reconcile(Result& r);
  std::string describe(const Lease& l) const;

  RouteTable& table_;
  LeasePolicy policy_;
  Ipv4Prefix own_;
  Be32 own_ip_;
  uint16_t port_be_;
  std::optional<std::string> own_id_;  // lease_id of our lease, once seen
  LeaseMap known_;                     // every lease of the store, by lease_id
  std::map<uint64_t, Lease> routes_;   // what is in the table now, by lease_map_key
  std::map<std::string, Refusal> refused_;
  std::array<uint64_t, kLeaseRefusalCount> refused_total_{};
};

}  // namespace udpring::core
