// Kubernetes Node objects as the API server's answers carry them: the
// input read as KubeClient does (io::parse_node_json, an object), then as
// a Node, as each item of a list page and as a watch event's object,
// through everything io/control/leases/kube_nodes.h makes of a Node. None
// of it may throw (a list is read on the control thread), a lease must be
// one the Node really names, and the patches must be idempotent: once
// applied (as the API server merges them), none is due again.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "io/control/leases/kube_client.h"
#include "io/control/leases/kube_nodes.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace udpring;
using Json = nlohmann::json;

const core::Ipv4Prefix kNetwork = *core::parse_prefix("10.244.0.0/16");
const core::Be32 kDetected = *core::parse_ipv4("192.168.1.10");
constexpr const char* kNow = "2024-01-01T00:00:00Z";

// A strategic-merge patch of status.conditions: merged by type.
Json with_condition(Json node, const Json& patch) {
  if (!node["status"].is_object()) node["status"] = Json::object();
  Json& conditions = node["status"]["conditions"];
  Json merged = Json::array();
  const Json& add = patch["status"]["conditions"][0];
  if (conditions.is_array()) {
    for (const Json& c : conditions) {
      if (!c.is_object() || c.value("type", Json()) != add["type"]) merged.push_back(c);
    }
  }
  merged.push_back(add);
  conditions = merged;
  return node;
}

std::optional<core::Lease> check_node(const Json& node) {
  const std::string prefix(io::kDefaultAnnotationPrefix);
  io::NodeView v = io::view_node(node, prefix);
  const std::optional<core::Lease> lease = io::node_lease(v, kNetwork);
  if (lease) {
    FUZZ_CHECK(v.managed && v.problem.empty() && v.pod_cidr && v.public_ip);
    FUZZ_CHECK(lease->subnet == *v.pod_cidr && lease->public_ip == *v.public_ip);
    FUZZ_CHECK(kNetwork.contains(lease->subnet));
  } else if (v.managed) {
    FUZZ_CHECK(!v.problem.empty());  // a managed node without a lease says why
  }

  std::string note;
  const core::Be32 ip = io::advertised_ip(node, prefix, kDetected, note);
  FUZZ_CHECK(ip == kDetected || !note.empty());
  if (!node.is_object()) return lease;
  if (const Json patch = io::annotation_patch(node, prefix, ip); !patch.is_null()) {
    Json patched = node;
    patched.merge_patch(patch);
    FUZZ_CHECK(io::annotation_patch(patched, prefix, ip).is_null());
    io::NodeView pv = io::view_node(patched, prefix);
    // The patch writes metadata.annotations and nothing else: a Node that
    // was well formed stays so, and one malformed elsewhere stays malformed
    // in the same member. What it writes may repair what was malformed
    // (annotations of the wrong type, or a non-object metadata, which the
    // merge replaces with an object).
    const bool repaired_by_patch = v.malformed.starts_with("metadata is not") ||
                                   v.malformed.starts_with("metadata.annotations") ||
                                   v.malformed.starts_with("annotation ");
    if (v.malformed.empty()) {
      FUZZ_CHECK(pv.malformed.empty());
    } else if (!repaired_by_patch) {
      FUZZ_CHECK(pv.malformed == v.malformed);
    }
    FUZZ_CHECK(!pv.malformed.empty() || (pv.managed && pv.public_ip == ip));
  }
  if (const Json patch = io::network_available_patch(node, kNow); !patch.is_null()) {
    FUZZ_CHECK(io::network_available_patch(with_condition(node, patch), kNow).is_null());
  }
  return lease;
}

// The events of a change must take a watcher from `before` to `after`.
// node_change compares one Node with itself, so both get its key (the
// name) here: consecutive items stand for one Node changing.
void check_change(const std::optional<core::Lease>& before, std::optional<core::Lease> after) {
  if (before && after) after->key = before->key;
  core::LeaseMap known;
  if (before) known[core::lease_id(*before)] = *before;
  for (const core::LeaseEvent& ev : io::node_change(before, after)) core::apply_event(known, ev);
  core::LeaseMap want;
  if (after) want[core::lease_id(*after)] = *after;
  FUZZ_CHECK(known == want);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Json doc = io::parse_node_json(std::string(reinterpret_cast<const char*>(data), size));
  if (doc.is_discarded() || !doc.is_object()) return 0;  // KubeClient::get throws KubeError
  std::optional<core::Lease> before = check_node(doc);
  if (const auto items = doc.find("items"); items != doc.end() && items->is_array()) {
    for (const Json& node : *items) {
      const std::optional<core::Lease> after = check_node(node);
      check_change(before, after);
      before = after;
    }
  }
  if (const auto obj = doc.find("object"); obj != doc.end() && obj->is_object()) {
    check_change(before, check_node(*obj));
  }
  return 0;
}
