#pragma once
// flannel's kube subnet manager (--kube-subnet-mgr): the lease is this
// node's spec.podCIDR, peers are the Nodes annotated kube-subnet-manager
// "true", and their next hop is their public-ip annotation. Compatible with
// stock flanneld nodes in the same cluster; where flanneld differs:
//  - no podCIDR yet: it waits (logged once, /readyz stays 503) instead of
//    exiting into a crash loop;
//  - a peer whose podCIDR changes has its route moved;
//  - the API server unreachable: forwarding to known peers goes on while
//    the watch reconnects with backoff.
//
// The Node watch runs on its own thread: a paginated list, then a watch
// from the list's resourceVersion with bookmarks, resumed from the last
// resourceVersion seen when a stream ends; a 410 Expired (the server
// compacted past it) re-lists, and so does a periodic resync. Updates go
// to the control thread through a queue, as in the etcd store. The
// NetworkUnavailable condition is patched from a thread of its own too, so
// that a slow API server never holds up the control thread.
//
// Lists and events are read with checked types (checked_json.h): a
// malformed one is a StoreInputError, counted and retried; a Node with a
// member of the wrong type is not routed (warned once, counted).

#include <atomic>
#include <map>
#include <thread>

#include "io/control/leases/kube_access.h"
#include "io/control/leases/kube_client.h"
#include "io/control/leases/lease_store.h"
#include "io/control/leases/update_queue.h"

namespace udpring::io {

struct KubeStoreOptions {
  KubeAccess access;
  std::string net_config_path;     // net-conf.json, mounted from the ConfigMap
  std::string annotation_prefix = "flannel.alpha.coreos.com";
  bool set_network_unavailable = true;  // --set-node-network-unavailable
  KubeEnv env;                     // NODE_NAME, POD_NAME, POD_NAMESPACE
  int list_page = 500;             // nodes per list page (client-go's pager)
  int resync_s = 1800;             // full re-list this often (jittered)
};

class KubeLeaseStore : public LeaseStore {
 public:
  explicit KubeLeaseStore(KubeStoreOptions opts, StoreContext ctx = {});
  ~KubeLeaseStore() override;

  std::string describe() const override;
  std::string read_config() override;
  core::Lease acquire(const core::NetConfig& cfg, core::Be32 public_ip,
                      const std::optional<core::Ipv4Prefix>& previous) override;
  bool wait_update(std::chrono::milliseconds timeout, core::LeaseUpdate& out) override;
  void maintain() override;
  core::LeaseStoreStatus status() const override;

 private:
  // Leases by node name, as the watch knows them.
  using NodeLeases = std::map<std::string, core::Lease>;
  struct Listing {
    NodeLeases leases;
    std::string resource_version;
  };
  std::string node_name();
  core::Lease acquire_once(const core::NetConfig& cfg, core::Be32 public_ip,
                           const std::optional<core::Ipv4Prefix>& previous);
  Listing list(KubeClient& client);
  /// The node's lease after `node` (nullopt: none), with problems warned once.
  std::optional<core::Lease> lease_of(const nlohmann::json& node);
  void watch_loop(Listing listing);
  /// Sets NetworkUnavailable=False, every 3 s until it lands (its own thread).
  void condition_loop();
  void count_input_error() const;
  static std::vector<core::Lease> leases(const NodeLeases& by_node);

  KubeStoreOptions opts_;
  StoreContext ctx_;
  KubeClient client_;  // control thread
  core::Ipv4Prefix network_;
  std::string node_;   // this node's name, once known
  std::string status_path_;
  std::thread conditioner_;  // started by maintain(), after acquire()

  // The watch thread and its queue.
  bool watching_ = false;
  std::thread watcher_;
  UpdateQueue updates_;
  std::map<std::string, std::string> warned_;  // node -> problem already logged (watch thread)
  std::atomic<uint64_t> reconnects_{0}, relists_{0};
  std::atomic<bool> connected_{false};
};

}  // namespace udpring::io
