#pragma once
// Which leases may become routes. A lease store is shared, and any writer
// of it (a misconfigured node, a stale tool, an attacker with write access
// to etcd or the Node objects) could otherwise steal or black-hole traffic:
// a /32 inside a peer's subnet wins every longest-prefix lookup, 0.0.0.0/0
// or the whole Network captures every unleased address, and a PublicIP that
// is ours, loopback, multicast or inside the overlay makes loops and floods.
// So a lease is routed only if its shape and next hop are sound and no
// earlier lease holds any of its space. The decision is a pure function of
// the whole lease set: re-running it after every change is what lets a
// refused lease become routable once the lease that beat it is gone.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/ipv4_addr.h"
#include "core/lease.h"

namespace udpring::core {

/// Why a lease is not routed. The names are the `reason` label of
/// udpring_leases_refused_total.
enum class LeaseRefusal : uint8_t {
  kWrongLength,         // prefix length is not SubnetLen
  kOutsideNetwork,      // not inside Network
  kPublicIpNotUnicast,  // 0/8, 127/8, 169.254/16, 224/4 or 240/4 (broadcast and class E)
  kPublicIpOurs,        // one of this node's addresses: traffic would loop back to us
  kPublicIpInNetwork,   // inside Network: the encapsulated packet would re-enter the overlay
  kOverlap,             // an earlier lease holds (some of) this subnet
};
inline constexpr size_t kLeaseRefusalCount = 6;

/// "wrong_length", "outside_network", "public_ip_not_unicast",
/// "public_ip_ours", "public_ip_in_network", "overlap".
std::string_view refusal_name(LeaseRefusal r);

/// What a node judges leases by.
struct LeasePolicy {
  Ipv4Prefix network;               // net-conf Network
  uint8_t subnet_len = 0;           // the one length every lease has (net-conf SubnetLen)
  std::vector<Be32> own_addresses;  // this node's addresses (any order, duplicates fine)
};

/// What the reason means, for the log ("its prefix length is not the
/// network's SubnetLen 24").
std::string refusal_text(LeaseRefusal r, const LeasePolicy& policy);

/// Whether `a` may be a next hop: not 0/8, loopback, link-local, multicast,
/// broadcast or class E.
bool unicast_public_ip(Be32 a);

/// Whether `a` is created before `b`: by `created`, then by `key` (so every
/// node that sees the same set picks the same winner), then by subnet.
bool created_before(const Lease& a, const Lease& b);

/// The refusal of one lease on its own (everything but overlap); nullopt
/// if it passes.
std::optional<LeaseRefusal> check_lease(const LeasePolicy& policy, const Lease& lease);

/// The overlap step alone: `in_order` are prefixes in creation order; for
/// each, nullopt if no earlier accepted one overlaps it (it is accepted),
/// else the position of the one that does. Any mix of lengths. O(n log n).
std::vector<std::optional<size_t>> first_claims(std::span<const Ipv4Prefix> in_order);

struct LeaseVerdicts {
  struct Refused {
    size_t index;                  // into the input
    LeaseRefusal reason;
    std::optional<size_t> winner;  // kOverlap: the earlier lease that holds the space
  };
  std::vector<size_t> accepted;  // indices into the input, pairwise disjoint, in creation order
  std::vector<Refused> refused;  // in input order
};

/// Judges every lease of `leases` (the complete set a store holds):
///  1. check_lease on each;
///  2. the leases that pass, in creation order (created_before), each
///     accepted unless it overlaps one accepted before it (kOverlap, naming
///     that one).
/// `own` (an index into `leases`, or nullopt) is this node's lease: it is
/// exempt from step 1 and takes part in step 2 like any other, so an
/// earlier lease can beat it (the caller decides what that means).
/// A refused lease never holds space: a 0.0.0.0/0 lease blocks nothing.
/// O(n log n).
LeaseVerdicts judge_leases(const LeasePolicy& policy, std::span<const Lease* const> leases,
                           std::optional<size_t> own = std::nullopt);
/// The same over a contiguous set.
LeaseVerdicts judge_leases(const LeasePolicy& policy, std::span<const Lease> leases,
                           std::optional<size_t> own = std::nullopt);

}  // namespace udpring::core
