#include "io/control/leases/kube_nodes.h"

namespace udpring::io {
namespace {

using Json = nlohmann::json;

std::string annotation(const Json& node, std::string_view prefix, std::string_view name) {
  const Json& meta = node.value("metadata", Json::object());
  const Json& ann = meta.value("annotations", Json::object());
  const std::string key = std::string(prefix) + "/" + std::string(name);
  const auto it = ann.find(key);
  return it != ann.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool has_annotation(const Json& node, std::string_view prefix, std::string_view name) {
  const Json& ann = node.value("metadata", Json::object()).value("annotations", Json::object());
  const auto it = ann.find(std::string(prefix) + "/" + std::string(name));
  return it != ann.end() && it->is_string();
}

std::string text(const Json& obj, const char* key) {
  const auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

NodeView view_node(const Json& node, std::string_view prefix) {
  NodeView v;
  if (!node.is_object()) return v;
  const Json& meta = node.value("metadata", Json::object());
  v.name = text(meta, "name");
  v.resource_version = text(meta, "resourceVersion");
  v.managed = annotation(node, prefix, "kube-subnet-manager") == "true";
  v.backend_type = annotation(node, prefix, "backend-type");
  const Json& spec = node.value("spec", Json::object());
  std::vector<std::string> cidrs;
  if (const std::string one = text(spec, "podCIDR"); !one.empty()) cidrs.push_back(one);
  for (const Json& c : spec.value("podCIDRs", Json::array())) {
    if (c.is_string()) cidrs.push_back(c.get<std::string>());
  }
  for (const std::string& c : cidrs) {
    if (c.find(':') != std::string::npos) continue;  // the IPv6 one of a dual-stack node
    v.pod_cidr = core::parse_prefix(c);
    if (!v.pod_cidr) v.problem = "podCIDR \"" + c + "\" is not an IPv4 prefix";
    break;
  }
  const std::string ip = annotation(node, prefix, "public-ip");
  v.public_ip = core::parse_ipv4(ip);
  if (v.problem.empty() && !v.public_ip) {
    v.problem = ip.empty() ? "no " + std::string(prefix) + "/public-ip annotation"
                           : std::string(prefix) + "/public-ip \"" + ip + "\" is not an IPv4 address";
  }
  if (v.problem.empty() && !v.pod_cidr) v.problem = "no IPv4 podCIDR";
  return v;
}

std::optional<core::Lease> node_lease(NodeView& v, const core::Ipv4Prefix& network) {
  if (!v.managed || !v.problem.empty()) return std::nullopt;
  if (!network.contains(*v.pod_cidr)) {
    v.problem = "podCIDR " + core::format_prefix(*v.pod_cidr) + " is outside Network " +
                core::format_prefix(network);
    return std::nullopt;
  }
  core::Lease l;
  l.subnet = *v.pod_cidr;
  l.public_ip = *v.public_ip;
  l.backend_type = v.backend_type;
  return l;
}

core::Be32 advertised_ip(const Json& node, std::string_view prefix, core::Be32 detected,
                         std::string& note) {
  note.clear();
  for (const char* name : {"public-ip-overwrite", "node-public-ip"}) {
    const std::string value = annotation(node, prefix, name);
    if (value.empty()) continue;
    const std::string key = std::string(prefix) + "/" + name;
    if (const auto ip = core::parse_ipv4(value)) {
      note = "from annotation " + key;
      return *ip;
    }
    note = "ignoring annotation " + key + " \"" + value + "\": not an IPv4 address";
  }
  return detected;
}

Json annotation_patch(const Json& node, std::string_view prefix, core::Be32 ip) {
  const std::pair<const char*, std::string> want[] = {
      {"kube-subnet-manager", "true"},
      {"backend-type", ""},  // what a udp node writes: its BackendType is empty
      {"backend-data", "null"},
      {"public-ip", core::format_ipv4(ip)},
  };
  Json changes = Json::object();
  for (const auto& [name, value] : want) {
    if (!has_annotation(node, prefix, name) || annotation(node, prefix, name) != value) {
      changes[std::string(prefix) + "/" + name] = value;
    }
  }
  if (changes.empty()) return nullptr;
  return {{"metadata", {{"annotations", changes}}}};
}

Json network_available_patch(const Json& node, const std::string& now) {
  const Json& conditions = node.value("status", Json::object()).value("conditions", Json::array());
  for (const Json& c : conditions) {
    if (c.is_object() && text(c, "type") == "NetworkUnavailable" && text(c, "status") == "False" &&
        text(c, "reason") == "FlannelIsUp") {
      return nullptr;
    }
  }
  return {{"status",
           {{"conditions", Json::array({{{"type", "NetworkUnavailable"},
                                         {"status", "False"},
                                         {"reason", "FlannelIsUp"},
                                         {"message", "Flannel is running on this node"},
                                         {"lastTransitionTime", now},
                                         {"lastHeartbeatTime", now}}})}}}};
}

std::vector<core::LeaseEvent> node_change(const std::optional<core::Lease>& before,
                                          const std::optional<core::Lease>& after) {
  using K = core::LeaseEvent::Kind;
  std::vector<core::LeaseEvent> out;
  if (before && (!after || after->subnet != before->subnet)) out.push_back({K::kRemoved, *before});
  if (after && (!before || *after != *before)) out.push_back({K::kAdded, *after});
  return out;
}

}  // namespace udpring::io
