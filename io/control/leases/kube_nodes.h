#pragma once
// What a Node object means to flannel's kube subnet manager, as pure
// functions of its JSON: its lease (spec.podCIDR and the public-ip
// annotation, for nodes that say kube-subnet-manager "true"), the
// annotations and condition this node writes, and the lease events a
// change of one Node implies. No I/O here, so all of it is unit-tested.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ipv4_addr.h"
#include "core/lease.h"

namespace udpring::io {

/// flanneld's --kube-annotation-prefix default.
inline constexpr std::string_view kDefaultAnnotationPrefix = "flannel.alpha.coreos.com";

struct NodeView {
  std::string name;
  std::string resource_version;
  std::optional<core::Ipv4Prefix> pod_cidr;  // spec.podCIDR, else the first IPv4 of podCIDRs
  bool managed = false;                      // <prefix>/kube-subnet-manager == "true"
  std::optional<core::Be32> public_ip;       // <prefix>/public-ip
  std::string backend_type;                  // <prefix>/backend-type
  std::string problem;                       // why a managed node has no lease ("" = none)
  int64_t created_unix = 0;                  // metadata.creationTimestamp (0 if absent or bad)
  /// A member the store reads has the wrong JSON type ("metadata.annotations
  /// is not an object"; "" = none): the node has no lease, whether managed
  /// or not, and `problem` says the same.
  std::string malformed;
};
/// Never throws, whatever the JSON types in `node`.
NodeView view_node(const nlohmann::json& node, std::string_view prefix);

/// An RFC 3339 time ("2024-05-06T07:08:09Z", fractions and offsets
/// allowed) in Unix seconds; nullopt if it is not one.
std::optional<int64_t> parse_rfc3339(std::string_view text);

/// The node's lease: managed, with an IPv4 podCIDR inside `network` and an
/// IPv4 public-ip; nullopt otherwise (with `view.problem` saying why, for
/// a managed node). Its key is the node's name and its creation order the
/// node's creationTimestamp, so of two nodes with one podCIDR the older
/// one is routed.
std::optional<core::Lease> node_lease(NodeView& view, const core::Ipv4Prefix& network);

/// The address this node advertises: `<prefix>/public-ip-overwrite` if set
/// and valid, else `<prefix>/node-public-ip`, else `detected`. `note` says
/// which annotation was used (or which one was invalid).
core::Be32 advertised_ip(const nlohmann::json& node, std::string_view prefix, core::Be32 detected,
                         std::string& note);

/// The strategic-merge patch that makes the node's annotations what a
/// stock udp flanneld writes (kube-subnet-manager "true", backend-type "",
/// backend-data "null", public-ip); null when they already are.
nlohmann::json annotation_patch(const nlohmann::json& node, std::string_view prefix, core::Be32 ip);

/// The strategic-merge patch setting condition NetworkUnavailable=False
/// (reason FlannelIsUp); null when the node already has it. `now` is an
/// RFC 3339 time. Conditions merge by type, so the others stay.
nlohmann::json network_available_patch(const nlohmann::json& node, const std::string& now);

/// The lease events that take a node from `before` to `after`: a new or
/// changed next hop is Added, a moved podCIDR is Removed + Added (flanneld
/// misses this one), a lost lease is Removed.
std::vector<core::LeaseEvent> node_change(const std::optional<core::Lease>& before,
                                          const std::optional<core::Lease>& after);

}  // namespace udpring::io
