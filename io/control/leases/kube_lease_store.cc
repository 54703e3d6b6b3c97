#include "io/control/leases/kube_lease_store.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <random>
#include <sstream>

#include "io/control/leases/kube_nodes.h"

namespace udpring::io {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const KubePermission& permission(std::string_view resource, std::string_view verb) {
  for (const KubePermission& p : kKubePermissions) {
    if (p.resource == resource && p.verb == verb) return p;
  }
  throw std::logic_error("no such permission");
}

std::string rfc3339_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Query values here are resourceVersions and continue tokens: base64 and
// digits, but '+', '/' and '=' must not reach the server raw.
std::string url_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string object_name(const Json& obj) {
  const auto meta = obj.find("metadata");
  return meta != obj.end() && meta->is_object() ? meta->value("name", "") : std::string();
}

std::string object_version(const Json& obj) {
  const auto meta = obj.find("metadata");
  return meta != obj.end() && meta->is_object() ? meta->value("resourceVersion", "")
                                                : std::string();
}

constexpr const char* kStrategicMerge = "application/strategic-merge-patch+json";

}  // namespace

KubeLeaseStore::KubeLeaseStore(KubeStoreOptions opts)
    : opts_(std::move(opts)), client_(opts_.access) {
  if (!opts_.env) opts_.env = [](const char* name) { return std::getenv(name); };
  if (opts_.annotation_prefix.empty()) opts_.annotation_prefix = kDefaultAnnotationPrefix;
}

KubeLeaseStore::~KubeLeaseStore() {
  updates_.stop();
  if (watcher_.joinable()) watcher_.join();
}

std::string KubeLeaseStore::describe() const {
  return "kube " + opts_.access.server + " (" + opts_.access.source + ")";
}

std::string KubeLeaseStore::read_config() {
  // As flanneld in kube mode: the network config is a file (the ConfigMap's
  // net-conf.json), not an API object.
  std::ifstream in(opts_.net_config_path);
  if (!in) {
    throw std::runtime_error("cannot read net-conf " + opts_.net_config_path +
                             " (in a pod: mount the kube-flannel-cfg ConfigMap at its directory; "
                             "or pass --net-config-path)");
  }
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string KubeLeaseStore::node_name() {
  if (!node_.empty()) return node_;
  const char* node = opts_.env("NODE_NAME");
  if (node && *node) return node_ = node;
  const char* pod = opts_.env("POD_NAME");
  const char* ns = opts_.env("POD_NAMESPACE");
  if (!pod || !*pod || !ns || !*ns) {
    throw std::runtime_error(
        "--kube-subnet-mgr needs this node's name: set NODE_NAME (env valueFrom fieldRef "
        "spec.nodeName) or POD_NAME and POD_NAMESPACE (fieldRef metadata.name and "
        "metadata.namespace)");
  }
  const Json p = client_.get(std::string("/api/v1/namespaces/") + ns + "/pods/" + pod,
                             permission("pods", "get"));
  const std::string name = p.value("spec", Json::object()).value("nodeName", "");
  if (name.empty()) {
    throw StoreUnavailable(std::string("pod ") + ns + "/" + pod + " has no spec.nodeName yet");
  }
  spdlog::info("node name {} (from pod {}/{})", name, ns, pod);
  return node_ = name;
}

core::Lease KubeLeaseStore::acquire(const core::NetConfig& cfg, core::Be32 public_ip,
                                    const std::optional<core::Ipv4Prefix>&) {
  network_ = cfg.network;
  const std::string name = node_name();
  status_path_ = "/api/v1/nodes/" + name + "/status";
  Json node;
  try {
    node = client_.get("/api/v1/nodes/" + name, permission("nodes", "get"));
  } catch (const KubeError& e) {
    if (e.status() != 404) throw;
    throw KubeError(404, e.reason(),
                    "node \"" + name + "\" not found in the API server" +
                        (opts_.env("NODE_NAME") ? " (NODE_NAME must be the node's name: env "
                                                  "valueFrom fieldRef spec.nodeName)"
                                                : ""));
  }
  NodeView view = view_node(node, opts_.annotation_prefix);
  if (!view.pod_cidr) {
    throw StoreUnavailable(
        "node \"" + name + "\" has no podCIDR yet (spec.podCIDR is empty); waiting for it. "
        "Node CIDRs are allocated by kube-controller-manager with --allocate-node-cidrs=true "
        "--cluster-cidr=" + core::format_prefix(cfg.network) +
        " (kubeadm init --pod-network-cidr=" + core::format_prefix(cfg.network) +
        "), or set by hand in the Node's spec.podCIDR");
  }
  if (!cfg.network.contains(*view.pod_cidr)) {
    throw std::runtime_error("node \"" + name + "\" has podCIDR " +
                             core::format_prefix(*view.pod_cidr) + ", outside Network " +
                             core::format_prefix(cfg.network) + " of " + opts_.net_config_path +
                             ": the cluster CIDR and net-conf.json's Network must agree");
  }
  std::string note;
  const core::Be32 ip = advertised_ip(node, opts_.annotation_prefix, public_ip, note);
  if (!note.empty()) spdlog::info("public IP {} {}", core::format_ipv4(ip), note);
  if (const Json patch = annotation_patch(node, opts_.annotation_prefix, ip); !patch.is_null()) {
    client_.patch(status_path_, patch, kStrategicMerge, permission("nodes/status", "patch"));
    spdlog::info("annotated node {}: {}", name, patch["metadata"]["annotations"].dump());
  }
  spdlog::info("lease {} from node {}'s podCIDR", core::format_prefix(*view.pod_cidr), name);
  core::Lease l;
  l.subnet = *view.pod_cidr;
  l.public_ip = ip;
  return l;
}

std::optional<core::Lease> KubeLeaseStore::lease_of(const Json& node) {
  NodeView v = view_node(node, opts_.annotation_prefix);
  auto lease = node_lease(v, network_);
  if (v.managed && !v.problem.empty()) {
    auto& last = warned_[v.name];
    if (last != v.problem) spdlog::warn("node {} is not routed: {}", v.name, v.problem);
    last = v.problem;
  } else {
    warned_.erase(v.name);
  }
  return lease;
}

KubeLeaseStore::Listing KubeLeaseStore::list(KubeClient& client) {
  Listing out;
  std::string cont;
  for (;;) {
    std::string path = "/api/v1/nodes?limit=" + std::to_string(opts_.list_page);
    if (!cont.empty()) path += "&continue=" + url_escape(cont);
    Json page;
    try {
      page = client.get(path, permission("nodes", "list"), 60000);
    } catch (const KubeError& e) {
      // The continue token outlived the server's history: start over.
      if (e.status() == 410 && !cont.empty()) {
        spdlog::info("node list continue token expired; listing again from the start");
        out = {};
        cont.clear();
        continue;
      }
      throw;
    }
    for (const Json& node : page.value("items", Json::array())) {
      if (auto l = lease_of(node)) out.leases[object_name(node)] = *l;
    }
    const Json& meta = page.value("metadata", Json::object());
    out.resource_version = meta.value("resourceVersion", "");
    cont = meta.value("continue", "");
    if (cont.empty()) break;
  }
  return out;
}

std::vector<core::Lease> KubeLeaseStore::leases(const NodeLeases& by_node) {
  std::vector<core::Lease> out;
  out.reserve(by_node.size());
  for (const auto& [name, l] : by_node) out.push_back(l);
  return out;
}

bool KubeLeaseStore::wait_update(std::chrono::milliseconds timeout, core::LeaseUpdate& out) {
  out = {};
  if (!watching_) {
    // The first list comes from this thread, so the first routes are in
    // place before forwarding starts; the watch goes on from its version.
    Listing listing = list(client_);
    spdlog::info("listed nodes at resourceVersion {}: {} peer lease(s)", listing.resource_version,
                 listing.leases.size());
    out.reset = true;
    out.leases = leases(listing.leases);
    watching_ = true;
    connected_.store(true);
    watcher_ = std::thread([this, l = std::move(listing)]() mutable { watch_loop(std::move(l)); });
    return true;
  }
  return updates_.pop(timeout, out);
}

void KubeLeaseStore::watch_loop(Listing listing) {
  KubeClient client(opts_.access);
  NodeLeases known = std::move(listing.leases);
  std::string rv = std::move(listing.resource_version);
  std::mt19937 rng(std::random_device{}());
  const auto jittered = [&](int s) { return std::chrono::seconds(s + rng() % (s / 4 + 1)); };
  auto next_resync = Clock::now() + jittered(opts_.resync_s);
  auto backoff = std::chrono::milliseconds(100);
  std::string last_error;
  bool relist = false;
  while (!updates_.stopped()) {
    std::string error;
    try {
      if (relist || Clock::now() >= next_resync) {
        Listing fresh = list(client);
        known = std::move(fresh.leases);
        rv = std::move(fresh.resource_version);
        updates_.push({.reset = true, .leases = leases(known), .events = {}});
        relists_.fetch_add(1);
        spdlog::info("re-listed nodes at resourceVersion {}: {} peer lease(s)", rv, known.size());
        relist = false;
        next_resync = Clock::now() + jittered(opts_.resync_s);
      }
      // Server-side timeout like client-go's (5 to 10 min), and never past
      // the next resync.
      const auto until_resync =
          std::chrono::duration_cast<std::chrono::seconds>(next_resync - Clock::now()).count();
      const long timeout = std::max<long>(1, std::min<long>(300 + rng() % 300, until_resync));
      const std::string path = "/api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion=" +
                               url_escape(rv) + "&timeoutSeconds=" + std::to_string(timeout);
      client.watch(path, permission("nodes", "watch"), [&](const Json& ev) {
        const std::string type = ev.value("type", "");
        static const Json kNone = Json::object();
        const auto it = ev.find("object");
        const Json& obj = it != ev.end() && it->is_object() ? *it : kNone;
        if (type == "ERROR") {
          if (obj.value("code", 0) == 410) {
            spdlog::info("node watch: resourceVersion {} is too old ({}); re-listing", rv,
                         obj.value("message", "410 Expired"));
            relist = true;
          } else {
            error = "watch error: " + obj.dump();
          }
          return false;
        }
        if (!connected_.exchange(true)) spdlog::info("node watch connected again at {}", rv);
        backoff = std::chrono::milliseconds(100);
        if (const std::string version = object_version(obj); !version.empty()) rv = version;
        if (type == "BOOKMARK") return true;
        const std::string name = object_name(obj);
        if (name.empty()) return true;
        std::optional<core::Lease> before, after;
        if (auto it = known.find(name); it != known.end()) before = it->second;
        if (type == "ADDED" || type == "MODIFIED") after = lease_of(obj);
        else if (type == "DELETED") warned_.erase(name);
        else return true;
        auto events = node_change(before, after);
        if (after) known[name] = *after;
        else known.erase(name);
        if (!events.empty()) updates_.push({.reset = false, .leases = {}, .events = std::move(events)});
        return true;
      }, updates_.stop_flag());
    } catch (const KubeError& e) {
      error = e.what();
      if (e.status() == 410) relist = true;
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (updates_.stopped()) break;
    if (error.empty()) continue;  // the stream ended (its timeout) or a re-list is due
    if (connected_.exchange(false) || error != last_error) {
      spdlog::warn("node watch: {}; retrying (forwarding to known peers continues)", error);
    }
    last_error = error;
    reconnects_.fetch_add(1);
    updates_.sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

void KubeLeaseStore::maintain() {
  // flanneld's CompleteLease: once forwarding is up, tell the scheduler the
  // node's network is. Retried every 3 s, as flanneld, until it lands.
  if (condition_done_ || !opts_.set_network_unavailable || status_path_.empty()) return;
  if (Clock::now() < next_condition_try_) return;
  next_condition_try_ = Clock::now() + std::chrono::seconds(3);
  try {
    const Json node = client_.get("/api/v1/nodes/" + node_, permission("nodes", "get"));
    if (const Json patch = network_available_patch(node, rfc3339_now()); !patch.is_null()) {
      client_.patch(status_path_, patch, kStrategicMerge, permission("nodes/status", "patch"));
      spdlog::info("node {}: condition NetworkUnavailable=False (FlannelIsUp)", node_);
    }
    condition_done_ = true;
  } catch (const std::exception& e) {
    if (condition_error_ != e.what()) {
      spdlog::warn("setting node {}'s NetworkUnavailable condition: {}; retrying every 3 s", node_,
                   e.what());
    }
    condition_error_ = e.what();
  }
}

core::LeaseStoreStatus KubeLeaseStore::status() const {
  core::LeaseStoreStatus s;
  s.watch_reconnects = reconnects_.load();
  s.relists = relists_.load();
  s.watch_connected = connected_.load();
  return s;
}

}  // namespace udpring::io
