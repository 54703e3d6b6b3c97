#pragma once
// The leases a node must never route (core/lease_policy.h), as a catalogue
// the store tests write into their store (lease files, etcd keys) in the
// layout of a 10.60.0.0/16 cluster of /24 leases, and the check of what
// /metrics then counts.

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace udpring::test {

struct BadLease {
  std::string name;       // the key's last component: "10.60.3.7-32", "10.60.3.0-24&fc00::-64"
  std::string public_ip;  // what its value advertises
  std::string reason;     // the udpring_leases_refused_total label it must be counted under
};

/// One bad lease of each kind, as the node with public IP `self_ip` judges
/// them:
///  - wrong_length: 0.0.0.0-0, the whole Network, and a /32 of `pod_ip`
///    (a pod of the good peer's subnet) sent elsewhere;
///  - outside_network: a /24 of 10.61.0.0/16;
///  - public_ip_ours: a free /24 naming `self_ip`;
///  - public_ip_not_unicast: free /24s naming 127.0.0.1, 224.0.0.1, 169.254.1.1;
///  - public_ip_in_network: a free /24 naming 10.60.200.1;
///  - overlap: `peer` (the good peer's "10.60.X.0/24") again, under its
///    dual-stack key, naming another address: it must be created after
///    the good peer's lease.
/// `free_subnet(i)` gives distinct /24s ("10.60.Y.0/24") no node holds.
/// `elsewhere` is an address no node has, the thief's next hop.
std::vector<BadLease> bad_leases(const std::string& peer, const std::string& pod_ip,
                                 const std::string& self_ip, const std::string& elsewhere,
                                 const std::function<std::string(int)>& free_subnet);

/// "10.60.3.0/24" -> "10.60.3.0-24".
std::string lease_name(const std::string& subnet);

/// The refusals `leases` must add up to, by reason (every reason present,
/// 0 where none).
std::map<std::string, long long> refusals_by_reason(const std::vector<BadLease>& leases);

/// Polls /metrics of the daemon in `ns` on `port` until every
/// udpring_leases_refused_total{reason} and udpring_leases_refused_current
/// equals `want` and udpring_routes equals `routes`, or `timeout_ms` pass;
/// "" when they did, else what differed (with the metrics text).
std::string await_refusals(const std::string& ns, int port,
                           const std::map<std::string, long long>& want, long long routes,
                           int timeout_ms);

}  // namespace udpring::test
