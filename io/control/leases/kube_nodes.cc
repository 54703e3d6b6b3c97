#include "io/control/leases/kube_nodes.h"

#include <charconv>
#include <chrono>

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

// `n` digits at text[pos], as a number; -1 if they are not digits.
int digits(std::string_view text, size_t pos, size_t n) {
  if (pos + n > text.size()) return -1;
  int v = 0;
  const auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + n, v);
  return ec == std::errc() && end == text.data() + pos + n ? v : -1;
}

}  // namespace

std::optional<int64_t> parse_rfc3339(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
  const int y = digits(t, 0, 4), mo = digits(t, 5, 2), d = digits(t, 8, 2);
  const int h = digits(t, 11, 2), mi = digits(t, 14, 2), sec = digits(t, 17, 2);
  if (t.size() < 20 || y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || sec < 0 || t[4] != '-' ||
      t[7] != '-' || (t[10] != 'T' && t[10] != 't') || t[13] != ':' || t[16] != ':' || h > 23 ||
      mi > 59 || sec > 60) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year(y), std::chrono::month(mo),
                                         std::chrono::day(d)};
  if (!date.ok()) return std::nullopt;
  size_t pos = 19;
  if (t[pos] == '.') {
    ++pos;
    const size_t start = pos;
    while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') ++pos;
    if (pos == start) return std::nullopt;
  }
  int64_t offset_s = 0;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    const int oh = digits(t, pos + 1, 2), om = digits(t, pos + 4, 2);
    if (oh < 0 || om < 0 || t[pos + 3] != ':' || oh > 23 || om > 59) return std::nullopt;
    offset_s = (t[pos] == '+' ? 1 : -1) * (int64_t{oh} * 3600 + om * 60);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != t.size()) return std::nullopt;
  const int64_t days = std::chrono::sys_days(date).time_since_epoch().count();
  return days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
}

NodeView view_node(const Json& node, std::string_view prefix) {
  NodeView v;
  if (!node.is_object()) return v;
  const Json& meta = node.value("metadata", Json::object());
  v.name = text(meta, "name");
  v.resource_version = text(meta, "resourceVersion");
  v.created_unix = parse_rfc3339(text(meta, "creationTimestamp")).value_or(0);
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
  l.key = v.name;
  l.created = v.created_unix;
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
