#include "io/control/leases/kube_nodes.h"

#include <charconv>
#include <chrono>

namespace udpring::io {
namespace {

using Json = nlohmann::json;

// obj[key], or null when obj is not an object or has no such member:
// whatever the types, reading a Node never throws (view_node() reports
// the members of the wrong type in NodeView::malformed).
const Json& member(const Json& obj, std::string_view key) {
  static const Json kNull;
  if (!obj.is_object()) return kNull;
  const auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

const Json& annotations(const Json& node) { return member(member(node, "metadata"), "annotations"); }

std::string annotation_key(std::string_view prefix, std::string_view name) {
  return std::string(prefix) + "/" + std::string(name);
}

std::string text(const Json& obj, std::string_view key) {
  const Json& v = member(obj, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

std::string annotation(const Json& node, std::string_view prefix, std::string_view name) {
  return text(annotations(node), annotation_key(prefix, name));
}

bool has_annotation(const Json& node, std::string_view prefix, std::string_view name) {
  return member(annotations(node), annotation_key(prefix, name)).is_string();
}

// "a number", "an object": for messages.
std::string a_type(const Json& v) {
  const std::string t = v.type_name();
  return (v.is_object() || v.is_array() ? "an " : "a ") + t;
}

// The first member the store reads that has the wrong type, "" if none.
std::string wrong_type(const Json& node, std::string_view prefix) {
  if (!node.is_object()) return "the node is " + a_type(node) + ", not an object";
  const auto bad = [](const Json& v, bool (Json::*is)() const noexcept) {
    return !v.is_null() && !(v.*is)();
  };
  const Json& meta = member(node, "metadata");
  if (bad(meta, &Json::is_object)) return "metadata is not an object";
  for (const char* key : {"name", "resourceVersion", "creationTimestamp"}) {
    if (bad(member(meta, key), &Json::is_string)) return std::string("metadata.") + key + " is not a string";
  }
  const Json& ann = member(meta, "annotations");
  if (bad(ann, &Json::is_object)) return "metadata.annotations is not an object";
  for (const char* name : {"kube-subnet-manager", "public-ip", "backend-type"}) {
    if (bad(member(ann, annotation_key(prefix, name)), &Json::is_string)) {
      return "annotation " + annotation_key(prefix, name) + " is not a string";
    }
  }
  const Json& spec = member(node, "spec");
  if (bad(spec, &Json::is_object)) return "spec is not an object";
  if (bad(member(spec, "podCIDR"), &Json::is_string)) return "spec.podCIDR is not a string";
  const Json& cidrs = member(spec, "podCIDRs");
  if (bad(cidrs, &Json::is_array)) return "spec.podCIDRs is not an array";
  if (cidrs.is_array()) {
    for (const Json& c : cidrs) {
      if (!c.is_string()) return "spec.podCIDRs holds " + a_type(c) + ", not a string";
    }
  }
  return {};
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
  v.malformed = wrong_type(node, prefix);
  const Json& meta = member(node, "metadata");
  v.name = text(meta, "name");
  v.resource_version = text(meta, "resourceVersion");
  v.created_unix = parse_rfc3339(text(meta, "creationTimestamp")).value_or(0);
  if (!v.malformed.empty()) {
    v.problem = v.malformed;
    return v;
  }
  v.managed = annotation(node, prefix, "kube-subnet-manager") == "true";
  v.backend_type = annotation(node, prefix, "backend-type");
  const Json& spec = member(node, "spec");
  std::vector<std::string> cidrs;
  if (const std::string one = text(spec, "podCIDR"); !one.empty()) cidrs.push_back(one);
  const Json& many = member(spec, "podCIDRs");
  if (many.is_array()) {
    for (const Json& c : many) cidrs.push_back(c.get<std::string>());  // all strings: checked
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
  const Json& conditions = member(member(node, "status"), "conditions");
  if (conditions.is_array()) {
    for (const Json& c : conditions) {
      if (text(c, "type") == "NetworkUnavailable" && text(c, "status") == "False" &&
          text(c, "reason") == "FlannelIsUp") {
        return nullptr;
      }
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
