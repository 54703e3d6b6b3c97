#include "io/control/leases/kube_lease_store.h"

#include <spdlog/spdlog.h>

#include <random>

#include "io/control/leases/checked_json.h"
#include "io/control/leases/kube_nodes.h"
#include "io/control/leases/small_file.h"

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

std::string object_name(const Json& obj, const std::string& where) {
  return string_member(object_member(obj, "metadata", where), "name", where);
}

std::string object_version(const Json& obj, const std::string& where) {
  return string_member(object_member(obj, "metadata", where), "resourceVersion", where);
}

constexpr const char* kStrategicMerge = "application/strategic-merge-patch+json";
constexpr auto kSource = core::InputSource::kKube;

}  // namespace

KubeLeaseStore::KubeLeaseStore(KubeStoreOptions opts, StoreContext ctx)
    : opts_(std::move(opts)), ctx_(ctx), client_(opts_.access, nullptr, ctx.stop_signals) {
  if (!opts_.env) opts_.env = [](const char* name) { return std::getenv(name); };
  if (opts_.annotation_prefix.empty()) opts_.annotation_prefix = kDefaultAnnotationPrefix;
}

KubeLeaseStore::~KubeLeaseStore() {
  updates_.stop();  // also ends both threads' requests in flight
  if (watcher_.joinable()) watcher_.join();
  if (conditioner_.joinable()) conditioner_.join();
}

void KubeLeaseStore::count_input_error() const {
  if (ctx_.input_errors) ctx_.input_errors->count(kSource);
}

std::string KubeLeaseStore::describe() const {
  return "kube " + opts_.access.server + " (" + opts_.access.source + ")";
}

std::string KubeLeaseStore::read_config() {
  // As flanneld in kube mode: the network config is a file (the ConfigMap's
  // net-conf.json, a symlink into the mount's ..data), not an API object.
  std::optional<SmallFile> f;
  try {
    f = read_small_file(opts_.net_config_path, core::kNetConfigLimits.max_bytes, Symlinks::kFollow);
  } catch (const FileInputError& e) {
    throw StoreInputError(std::string("net-conf: ") + e.what());
  }
  if (!f) {
    throw std::runtime_error("cannot read net-conf " + opts_.net_config_path +
                             " (in a pod: mount the kube-flannel-cfg ConfigMap at its directory; "
                             "or pass --net-config-path)");
  }
  return std::move(f->text);
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
  const std::string path = std::string("/api/v1/namespaces/") + ns + "/pods/" + pod;
  const Json p = client_.get(path, permission("pods", "get"));
  const std::string where = "kube GET " + path;
  const std::string name = string_member(object_member(p, "spec", where), "nodeName", where);
  if (name.empty()) {
    throw StoreUnavailable(std::string("pod ") + ns + "/" + pod + " has no spec.nodeName yet");
  }
  spdlog::info("node name {} (from pod {}/{})", name, ns, pod);
  return node_ = name;
}

core::Lease KubeLeaseStore::acquire(const core::NetConfig& cfg, core::Be32 public_ip,
                                    const std::optional<core::Ipv4Prefix>& previous) {
  return counting_input_errors(ctx_.input_errors, kSource, describe(),
                               [&] { return acquire_once(cfg, public_ip, previous); });
}

core::Lease KubeLeaseStore::acquire_once(const core::NetConfig& cfg, core::Be32 public_ip,
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
  if (!view.malformed.empty()) {
    throw StoreInputError("kube node \"" + name + "\": " + view.malformed);
  }
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
  if (!v.malformed.empty() || (v.managed && !v.problem.empty())) {
    auto& last = warned_[v.name];
    if (last != v.problem) {
      spdlog::warn("node {} is not routed: {}", core::printable(v.name), v.problem);
      if (!v.malformed.empty()) count_input_error();
    }
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
    const std::string where = "kube GET " + client.access().server + path;
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
    for (const Json& node : array_member(page, "items", where)) {
      const std::string name = object_name(object_item(node, "an item", where), where);
      if (auto l = lease_of(node)) out.leases[name] = *l;
    }
    const Json& meta = object_member(page, "metadata", where);
    out.resource_version = string_member(meta, "resourceVersion", where);
    cont = string_member(meta, "continue", where);
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
    Listing listing = counting_input_errors(ctx_.input_errors, kSource, describe(),
                                            [&] { return list(client_); });
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
      const std::string where = "kube watch " + opts_.access.server + "/api/v1/nodes";
      client.watch(path, permission("nodes", "watch"), [&](const Json& ev) {
        // Every member is read (and its type checked) before anything is
        // applied: a malformed event throws with the state as it was.
        const std::string type = string_member(ev, "type", where);
        const Json& obj = object_member(ev, "object", where);
        if (type == "ERROR") {
          if (int64_member(obj, "code", where) == 410) {
            spdlog::info("node watch: resourceVersion {} is too old ({}); re-listing", rv,
                         core::printable(string_member(obj, "message", where, "410 Expired")));
            relist = true;
          } else {
            error = "watch error: " + excerpt(obj);
          }
          return false;
        }
        const std::string version = object_version(obj, where);
        const std::string name = type == "BOOKMARK" ? std::string() : object_name(obj, where);
        if (!connected_.exchange(true)) spdlog::info("node watch connected again at {}", rv);
        backoff = std::chrono::milliseconds(100);
        if (!version.empty()) rv = version;
        if (type == "BOOKMARK") return true;
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
    } catch (const StoreInputError& e) {
      count_input_error();
      error = e.what();
    } catch (const nlohmann::json::exception& e) {
      count_input_error();
      error = std::string("malformed answer (") + e.what() + ")";
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
  // node's network is.
  if (conditioner_.joinable() || !opts_.set_network_unavailable || status_path_.empty()) return;
  conditioner_ = std::thread([this] { condition_loop(); });
}

void KubeLeaseStore::condition_loop() {
  // Its own client (one per thread), whose requests end when the store stops.
  KubeClient client(opts_.access, &updates_.stop_flag());
  std::string last_error;
  while (!updates_.stopped()) {
    try {
      counting_input_errors(ctx_.input_errors, kSource, describe(), [&] {
        const Json node = client.get("/api/v1/nodes/" + node_, permission("nodes", "get"));
        if (const Json patch = network_available_patch(node, rfc3339_now()); !patch.is_null()) {
          client.patch(status_path_, patch, kStrategicMerge, permission("nodes/status", "patch"));
          spdlog::info("node {}: condition NetworkUnavailable=False (FlannelIsUp)", node_);
        }
      });
      return;
    } catch (const std::exception& e) {
      if (updates_.stopped()) return;
      if (last_error != e.what()) {
        spdlog::warn("setting node {}'s NetworkUnavailable condition: {}; retrying every 3 s",
                     node_, e.what());
      }
      last_error = e.what();
    }
    updates_.sleep_for(std::chrono::seconds(3));  // as flanneld, until it lands
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
