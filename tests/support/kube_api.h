#pragma once
// The Kubernetes API stand-in (tests/support/kube_api_server.py) run in a
// test namespace over TLS, and what the kube-mode tests do with it: act as
// the cluster admin (create, patch and delete Nodes and Pods), give
// service-account users their RBAC permissions, write kubeconfigs, and the
// test controls (compaction, pausing and ending watch streams).

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/netns.h"

namespace udpring::test {

class KubeApi {
 public:
  /// The flannel ClusterRole's permissions, as "resource/verb".
  static const std::vector<std::string> kFlannelRole;
  static constexpr const char* kAdminToken = "admin-token";
  static constexpr const char* kFlannelToken = "flannel-token";
  static constexpr const char* kFlannelUser = "system:serviceaccount:kube-flannel:flannel";

  /// Starts the server in `ns` on ip:6443 with a new CA in dir/pki; the
  /// user kFlannelToken has `allow` (default: the flannel ClusterRole).
  KubeApi(const Netns& ns, std::string ip, std::string dir,
          const std::vector<std::string>& allow = kFlannelRole, bool mutable_pod_cidr = false);
  ~KubeApi();
  KubeApi(const KubeApi&) = delete;
  KubeApi& operator=(const KubeApi&) = delete;

  std::string url() const { return "https://" + ip_ + ":6443"; }
  std::string ca_file() const { return dir_ + "/pki/ca.crt"; }

  struct Reply {
    long status = 0;
    nlohmann::json body;
  };
  /// One request as `token` (curl, from inside the server's namespace).
  Reply call(const std::string& method, const std::string& path,
             const nlohmann::json& body = nullptr,
             const std::string& content_type = "application/json",
             const std::string& token = kAdminToken) const;
  /// call() that throws unless the answer is 2xx.
  nlohmann::json must(const std::string& method, const std::string& path,
                      const nlohmann::json& body = nullptr,
                      const std::string& content_type = "application/json") const;

  /// A Node with a Ready condition, podCIDR `pod_cidr` ("" = none yet) and
  /// `annotations`.
  void add_node(const std::string& name, const std::string& pod_cidr,
                const nlohmann::json& annotations = nlohmann::json::object()) const;
  /// The annotations a stock udp flanneld writes for public IP `ip`.
  static nlohmann::json flannel_annotations(const std::string& ip);
  nlohmann::json node(const std::string& name) const { return must("GET", "/api/v1/nodes/" + name); }
  /// (Re)sets a service-account user and its permissions.
  void set_user(const std::string& token, const std::string& name,
                const std::vector<std::string>& allow) const;
  /// A kubeconfig for `token` (CA file `ca`, default ours); returns its path.
  std::string kubeconfig(const std::string& token, const std::string& file_name,
                         const std::string& ca = "") const;
  /// Test controls.
  void compact() const { must("POST", "/_test/compact"); }
  void pause_watches() const { must("POST", "/_test/pause-watches"); }
  void resume_watches() const { must("POST", "/_test/resume-watches"); }
  void close_watches() const { must("POST", "/_test/close-watches"); }
  /// Queues `body` (any text) as the answer to the next `method` `path`
  /// (a watch if `watch`) that `client` (default: anyone but the admin) makes.
  void sabotage(const std::string& method, const std::string& path, const std::string& body,
                bool watch = false, const std::string& client = "") const;
  /// Queued answers not given yet.
  int sabotage_pending() const { return must("GET", "/_test/sabotage").value("pending", -1); }

  std::string log() const;

 private:
  const Netns& ns_;
  std::string ip_;
  std::string dir_;
  std::unique_ptr<Process> proc_;
  mutable int calls_ = 0;
};

}  // namespace udpring::test
