// The Kubernetes lease store (--kube-subnet-mgr) against the project's API
// server stand-in (tests/support/kube_api_server.py) over TLS, with nodes
// in network namespaces: self-annotation and the NetworkUnavailable
// condition, pod traffic, a stock flanneld peer, joins, deletes, a moved
// podCIDR, compaction and re-list, bookmarks, pagination, in-cluster
// credentials with token rotation, the errors for a bad token, a missing
// RBAC verb, an untrusted server certificate and a missing podCIDR, and
// answers and Nodes of the wrong JSON types.

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/cluster.h"
#include "tests/support/kube_api.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/original_peer.h"
#include "tests/support/traffic.h"

namespace udpring::test {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
constexpr const char* kPrefix = "flannel.alpha.coreos.com/";

class KubeLeases : public ::testing::Test {
 protected:
  void SetUp() override {
    UDPRING_REQUIRE_INTEGRATION();
    if (sh("command -v python3 >/dev/null && command -v curl >/dev/null && command -v openssl "
           ">/dev/null") != 0) {
      FAIL() << "python3, curl and openssl are needed (scripts/install-deps.sh)";
    }
  }

  void make(int nodes, const std::string& network = "10.60.0.0/16",
            const std::vector<std::string>& allow = KubeApi::kFlannelRole,
            bool mutable_pod_cidr = false) {
    cluster_ = std::make_unique<Cluster>(nodes, network);
    api_ = std::make_unique<KubeApi>(cluster_->lan, "192.168.78.1", cluster_->dir + "/api", allow,
                                     mutable_pod_cidr);
    kubeconfig_ = api_->kubeconfig(KubeApi::kFlannelToken, "kubeconfig");
  }

  static std::string name(int i) { return "node-" + std::to_string(i); }
  static std::string cidr(int i) { return "10.60." + std::to_string(i) + ".0/24"; }
  std::string env_path(int i) const { return cluster_->dir + "/subnet-" + std::to_string(i) + ".env"; }

  std::vector<std::string> argv(int i, const std::vector<std::string>& extra,
                                const std::string& kubeconfig = "") const {
    std::vector<std::string> a = {"env",
                                  "NODE_NAME=" + name(i),
                                  UDPRINGD_PATH,
                                  "--kube-subnet-mgr",
                                  "--kubeconfig-file=" + (kubeconfig.empty() ? kubeconfig_ : kubeconfig),
                                  "--net-config-path=" + cluster_->net_conf,
                                  "--iface=u0",
                                  "--workers=1",
                                  "--subnet-file=" + env_path(i)};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::unique_ptr<Process> launch_argv(int i, const std::vector<std::string>& a) {
    return std::make_unique<Process>(cluster_->node(i).name(), a,
                                     cluster_->dir + "/udpringd-" + std::to_string(i) + "-" +
                                         std::to_string(starts_++) + ".log");
  }
  std::unique_ptr<Process> launch(int i, const std::vector<std::string>& extra = {},
                                  const std::string& kubeconfig = "") {
    return launch_argv(i, argv(i, extra, kubeconfig));
  }
  std::unique_ptr<Process> start(int i, const std::vector<std::string>& extra = {}) {
    auto p = launch(i, extra);
    if (!p->wait_for_log("udpringd ready", 15000)) {
      ADD_FAILURE() << name(i) << ":\n" << p->log() << "\nAPI server:\n" << api_->log();
    }
    return p;
  }

  // The node's condition of `type`, or null.
  Json condition(const std::string& node, const std::string& type) const {
    for (const Json& c : api_->node(node)["status"].value("conditions", Json::array())) {
      if (c.value("type", "") == type) return c;
    }
    return nullptr;
  }
  bool wait_condition(const std::string& node, const std::string& type, const std::string& status,
                      int ms) const {
    for (const auto end = Clock::now() + std::chrono::milliseconds(ms); Clock::now() < end;) {
      const Json c = condition(node, type);
      if (!c.is_null() && c.value("status", "") == status) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // /metrics is refreshed by the control loop (every 250 ms at most).
  bool wait_metric(int node, uint16_t port, const std::string& sample, long long want, int ms) const {
    for (const auto end = Clock::now() + std::chrono::milliseconds(ms); Clock::now() < end;) {
      if (metric(http_get(cluster_->node(node).name(), port, "/metrics"), sample) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // The HTTP status of /readyz (0: no answer).
  static int readyz(const Netns& ns, uint16_t port) {
    const std::string r = http_get(ns.name(), port, "/readyz");
    const size_t sp = r.find(' ');
    return sp == std::string::npos ? 0 : std::atoi(r.c_str() + sp + 1);
  }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<KubeApi> api_;
  std::string kubeconfig_;
  int starts_ = 0;
};

TEST_F(KubeLeases, TwoNodesAnnotateThemselvesAndCarryPodTraffic) {
  make(2);
  api_->add_node(name(0), cidr(0));
  api_->add_node(name(1), cidr(1));
  auto d0 = start(0, {"--healthz-port=9100"});
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());

  // The lease is the node's podCIDR.
  EXPECT_EQ(Cluster::lease_from_env(env_path(0)), cidr(0));
  EXPECT_EQ(Cluster::lease_from_env(env_path(1)), cidr(1));
  // Exactly the annotations a stock udp flanneld writes, and nothing else touched.
  const Json ann = api_->node(name(0))["metadata"]["annotations"];
  EXPECT_EQ(ann, KubeApi::flannel_annotations(Cluster::node_ip(0))) << ann.dump();
  // NetworkUnavailable=False by strategic merge: Ready is still there.
  EXPECT_TRUE(wait_condition(name(0), "NetworkUnavailable", "False", 5000)) << d0->log();
  const Json nu = condition(name(0), "NetworkUnavailable");
  EXPECT_EQ(nu.value("reason", ""), "FlannelIsUp");
  EXPECT_EQ(nu.value("message", ""), "Flannel is running on this node");
  EXPECT_EQ(condition(name(0), "Ready").value("status", ""), "True");
  EXPECT_EQ(condition(name(1), "Ready").value("status", ""), "True");

  EXPECT_TRUE(d0->wait_for_log("route " + cidr(1) + " -> " + Cluster::node_ip(1) + ":8285", 3000))
      << d0->log();
  EXPECT_TRUE(d1->wait_for_log("route " + cidr(0) + " -> " + Cluster::node_ip(0) + ":8285", 3000))
      << d1->log();
  const std::string pod0 = cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  EXPECT_TRUE(Cluster::reachable_within(cluster_->pod(0), pod1, 3000));
  EXPECT_EQ(tcp_transfer_verified(cluster_->pod(1).name(), pod1, 5301, cluster_->pod(0).name(), 4u << 20),
            4u << 20);
  EXPECT_EQ(tcp_transfer_verified(cluster_->pod(0).name(), pod0, 5302, cluster_->pod(1).name(), 4u << 20),
            4u << 20);
  const std::string metrics = http_get(cluster_->node(0).name(), 9100, "/metrics");
  EXPECT_EQ(metric(metrics, "udpring_routes"), 1) << metrics;
  EXPECT_EQ(metric(metrics, "udpring_lease_watch_connected"), 1) << metrics;
  EXPECT_EQ(readyz(cluster_->node(0), 9100), 200);
  EXPECT_EQ(d0->stop(), 0);
  EXPECT_EQ(d1->stop(), 0);
}

// A stock flanneld node: annotated exactly as flanneld annotates it, and
// forwarding with the original protocol (the test's own implementation).
// A node that flannel has not annotated is no peer.
TEST_F(KubeLeases, StockFlanneldPeerInteroperatesAndUnannotatedNodesAreIgnored) {
  make(2);
  api_->add_node(name(0), cidr(0));
  api_->add_node("stock", "10.60.9.0/24", KubeApi::flannel_annotations(Cluster::node_ip(1)));
  api_->add_node("not-flannel", "10.60.8.0/24");  // e.g. a node of another CNI, or not yet up
  api_->add_node("half", "10.60.7.0/24",
                 {{std::string(kPrefix) + "public-ip", "192.168.78.77"}});  // no kube-subnet-manager
  auto d0 = start(0);
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(d0->wait_for_log("route 10.60.9.0/24 -> " + Cluster::node_ip(1) + ":8285", 3000))
      << d0->log();

  OriginalPeer peer(cluster_->node(1).name(), "flannel0", "10.60.9.0", 1472, "10.60.0.0/16",
                    Cluster::node_ip(1), 8285, cidr(0), Cluster::node_ip(0));
  const std::string stock_env = cluster_->dir + "/stock.env";
  std::ofstream(stock_env) << "FLANNEL_NETWORK=10.60.0.0/16\nFLANNEL_SUBNET=10.60.9.1/24\n"
                              "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n";
  const std::string pod0 = cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, stock_env);
  EXPECT_TRUE(Cluster::reachable_within(cluster_->pod(0), pod1, 3000)) << d0->log();
  EXPECT_EQ(tcp_transfer_verified(cluster_->pod(1).name(), pod1, 5303, cluster_->pod(0).name(), 2u << 20),
            2u << 20);
  EXPECT_EQ(tcp_transfer_verified(cluster_->pod(0).name(), pod0, 5304, cluster_->pod(1).name(), 2u << 20),
            2u << 20);
  EXPECT_GT(peer.udp_to_tun(), 100u);

  const std::string log = d0->log();
  EXPECT_EQ(log.find("route 10.60.8.0/24"), std::string::npos) << log;
  EXPECT_EQ(log.find("route 10.60.7.0/24"), std::string::npos) << log;
  EXPECT_NE(log.find(": 2 peer lease(s)"), std::string::npos) << log;  // ours and the stock node
  EXPECT_FALSE(Cluster::ping(cluster_->pod(0), "10.60.8.1"));
}

TEST_F(KubeLeases, JoinsDeletesAndAMovedPodCidrFollowTheApi) {
  make(2, "10.60.0.0/16", KubeApi::kFlannelRole, /*mutable_pod_cidr=*/true);
  api_->add_node(name(0), cidr(0));
  api_->add_node(name(1), cidr(1));
  auto d0 = start(0);
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());
  cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  EXPECT_TRUE(Cluster::reachable_within(cluster_->pod(0), pod1, 3000));

  // A third node joins: reachable from pod 0 within 2 s of its daemon's start.
  const int n2 = cluster_->add_node();
  api_->add_node(name(n2), cidr(n2));
  auto d2 = start(n2);
  const std::string pod2 = cluster_->add_pod(n2, env_path(n2));
  EXPECT_TRUE(Cluster::reachable_within(cluster_->pod(0), pod2, 2000)) << d0->log();

  // Node 1 deleted from the API: unrouted on node 0 within 2 s; node 1's
  // daemon has lost its lease and exits as flanneld would.
  const auto t0 = Clock::now();
  api_->must("DELETE", "/api/v1/nodes/" + name(1));
  EXPECT_TRUE(d0->wait_for_log("route " + cidr(1) + " removed", 2000)) << d0->log();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(2100));
  EXPECT_EQ(d1->wait_exit(3000), 1) << d1->log();
  EXPECT_FALSE(Cluster::ping(cluster_->pod(0), pod1));

  // A peer's podCIDR changes: its route moves (flanneld keeps the old one).
  api_->add_node("moving", "10.60.20.0/24", KubeApi::flannel_annotations("192.168.78.50"));
  EXPECT_TRUE(d0->wait_for_log("route 10.60.20.0/24 -> 192.168.78.50:8285", 2000)) << d0->log();
  api_->must("PATCH", "/api/v1/nodes/moving",
             {{"spec", {{"podCIDR", "10.60.21.0/24"}, {"podCIDRs", {"10.60.21.0/24"}}}}},
             "application/strategic-merge-patch+json");
  EXPECT_TRUE(d0->wait_for_log("route 10.60.20.0/24 removed", 2000)) << d0->log();
  EXPECT_TRUE(d0->wait_for_log("route 10.60.21.0/24 -> 192.168.78.50:8285", 2000)) << d0->log();
  // Its public IP changes: the next hop follows.
  api_->must("PATCH", "/api/v1/nodes/moving/status",
             {{"metadata", {{"annotations", {{std::string(kPrefix) + "public-ip", "192.168.78.51"}}}}}},
             "application/strategic-merge-patch+json");
  EXPECT_TRUE(d0->wait_for_log("route 10.60.21.0/24 -> 192.168.78.51:8285", 2000)) << d0->log();
  // It stops being flannel's: unrouted.
  api_->must("PATCH", "/api/v1/nodes/moving/status",
             {{"metadata", {{"annotations", {{std::string(kPrefix) + "kube-subnet-manager", nullptr}}}}}},
             "application/strategic-merge-patch+json");
  EXPECT_TRUE(d0->wait_for_log("route 10.60.21.0/24 removed", 2000)) << d0->log();
  EXPECT_EQ(d0->stop(), 0);
}

// Of two Nodes with one podCIDR the older one is routed, whatever their
// names, and the newer one once the older is gone. A Node whose podCIDR is
// not as long as ours (one mask size for every node), or whose public-ip is
// loopback, is never routed.
TEST_F(KubeLeases, TheOlderOfTwoNodesWithOnePodCidrWinsAndBadNodesAreRefused) {
  make(1);
  api_->add_node(name(0), cidr(0));
  api_->add_node("zz-older", "10.60.70.0/24", KubeApi::flannel_annotations("192.168.78.70"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // creationTimestamp is in seconds
  api_->add_node("aa-newer", "10.60.70.0/24", KubeApi::flannel_annotations("192.168.78.71"));
  api_->add_node("narrow", "10.60.71.0/26", KubeApi::flannel_annotations("192.168.78.72"));
  api_->add_node("loopback", "10.60.72.0/24", KubeApi::flannel_annotations("127.0.0.1"));
  auto d0 = start(0, {"--healthz-port=9101"});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(d0->wait_for_log("route 10.60.70.0/24 -> 192.168.78.70:8285", 2000)) << d0->log();
  for (const auto& [reason, n] : {std::pair{"overlap", 1}, {"wrong_length", 1},
                                  {"public_ip_not_unicast", 1}, {"outside_network", 0}}) {
    const std::string sample = std::string("udpring_leases_refused_total{reason=\"") + reason + "\"}";
    EXPECT_TRUE(wait_metric(0, 9101, sample, n, 2000)) << sample;
  }
  EXPECT_TRUE(wait_metric(0, 9101, "udpring_routes", 1, 2000));
  const std::string log = d0->log();
  EXPECT_NE(log.find("not routing lease aa-newer (10.60.70.0/24 -> 192.168.78.71)"), std::string::npos)
      << log;
  EXPECT_NE(log.find("lease zz-older (10.60.70.0/24 -> 192.168.78.70) holds that space"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("not routing lease narrow"), std::string::npos) << log;
  EXPECT_NE(log.find("not routing lease loopback"), std::string::npos) << log;
  api_->must("DELETE", "/api/v1/nodes/zz-older");
  EXPECT_TRUE(d0->wait_for_log("route 10.60.70.0/24 -> 192.168.78.71:8285", 2000)) << d0->log();
  EXPECT_TRUE(wait_metric(0, 9101, "udpring_leases_refused_current{reason=\"overlap\"}", 0, 2000));
  EXPECT_TRUE(d0->running());
}

// Events missed while disconnected, then compacted away: the watch's
// resourceVersion is too old (ERROR 410 Expired), so the store re-lists
// and the routes match the API again.
TEST_F(KubeLeases, CompactionWhileDisconnectedReListsToTheRightRoutes) {
  make(1);
  api_->add_node(name(0), cidr(0));
  api_->add_node("gone", "10.60.30.0/24", KubeApi::flannel_annotations("192.168.78.60"));
  api_->add_node("moved", "10.60.31.0/24", KubeApi::flannel_annotations("192.168.78.61"));
  auto d0 = start(0, {"--healthz-port=9101"});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(d0->wait_for_log("route 10.60.30.0/24 -> 192.168.78.60:8285", 2000));

  api_->pause_watches();
  api_->must("DELETE", "/api/v1/nodes/gone");
  api_->must("PATCH", "/api/v1/nodes/moved/status",
             {{"metadata", {{"annotations", {{std::string(kPrefix) + "public-ip", "192.168.78.62"}}}}}},
             "application/strategic-merge-patch+json");
  api_->add_node("new", "10.60.32.0/24", KubeApi::flannel_annotations("192.168.78.63"));
  api_->compact();
  api_->close_watches();
  api_->resume_watches();

  EXPECT_TRUE(d0->wait_for_log("re-listing", 3000)) << d0->log();
  EXPECT_TRUE(d0->wait_for_log("route 10.60.30.0/24 removed", 3000)) << d0->log();
  EXPECT_TRUE(d0->wait_for_log("route 10.60.31.0/24 -> 192.168.78.62:8285", 3000)) << d0->log();
  EXPECT_TRUE(d0->wait_for_log("route 10.60.32.0/24 -> 192.168.78.63:8285", 3000)) << d0->log();
  const std::string metrics = http_get(cluster_->node(0).name(), 9101, "/metrics");
  EXPECT_EQ(metric(metrics, "udpring_routes"), 2) << metrics;
  EXPECT_EQ(metric(metrics, "udpring_lease_relists_total"), 1) << metrics;
  EXPECT_EQ(d0->stop(), 0);
}

// The API server unreachable (every packet to it refused): forwarding to
// the known peers goes on, the watch reconnects with backoff, and what
// changed meanwhile arrives once it is back, without a re-list.
TEST_F(KubeLeases, ApiServerOutageKeepsForwardingAndCatchesUp) {
  make(2);
  api_->add_node(name(0), cidr(0));
  api_->add_node(name(1), cidr(1));
  auto d0 = start(0, {"--healthz-port=9107"});
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());
  cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  ASSERT_TRUE(Cluster::reachable_within(cluster_->pod(0), pod1, 3000));

  const std::string rule = "INPUT -i br0 -p tcp --dport 6443 -j REJECT --reject-with tcp-reset";
  sh_ok(cluster_->lan.exec() + "iptables -I " + rule);
  api_->close_watches();  // the open stream ends; the reconnect is refused
  EXPECT_TRUE(d0->wait_for_log("Couldn't connect to server", 5000)) << d0->log();
  EXPECT_TRUE(d0->wait_for_log("forwarding to known peers continues", 100)) << d0->log();
  api_->add_node("during", "10.60.60.0/24", KubeApi::flannel_annotations("192.168.78.90"));
  EXPECT_TRUE(wait_metric(0, 9107, "udpring_lease_watch_connected", 0, 2000));
  EXPECT_EQ(tcp_transfer_verified(cluster_->pod(1).name(), pod1, 5305, cluster_->pod(0).name(), 1u << 20),
            1u << 20);
  EXPECT_TRUE(d0->running());

  sh_ok(cluster_->lan.exec() + "iptables -D " + rule);
  EXPECT_TRUE(d0->wait_for_log("route 10.60.60.0/24 -> 192.168.78.90:8285", 8000)) << d0->log();
  EXPECT_TRUE(d0->wait_for_log("node watch connected again", 100)) << d0->log();
  EXPECT_TRUE(wait_metric(0, 9107, "udpring_lease_watch_connected", 1, 2000));
  const std::string metrics = http_get(cluster_->node(0).name(), 9107, "/metrics");
  EXPECT_GE(metric(metrics, "udpring_lease_watch_reconnects_total"), 1) << metrics;
  EXPECT_EQ(metric(metrics, "udpring_lease_relists_total"), 0) << metrics;
}

// Bookmarks carry the watch past changes it does not see (other kinds):
// after a compaction, a reconnect from the bookmark's version needs no
// re-list. A client that ignored bookmarks would be too old and re-list.
TEST_F(KubeLeases, BookmarksKeepTheWatchCurrentAcrossCompaction) {
  make(1);
  api_->add_node(name(0), cidr(0));
  auto d0 = start(0, {"--healthz-port=9102"});
  ASSERT_FALSE(HasFailure());
  for (int i = 0; i < 5; ++i) {
    api_->must("POST", "/api/v1/namespaces/default/pods",
               {{"metadata", {{"name", "pod-" + std::string(1, static_cast<char>('a' + i))}}}, {"spec", {{"nodeName", name(0)}}}});
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // bookmarks every second
  api_->compact();
  api_->close_watches();
  api_->add_node("after", "10.60.40.0/24", KubeApi::flannel_annotations("192.168.78.70"));
  EXPECT_TRUE(d0->wait_for_log("route 10.60.40.0/24 -> 192.168.78.70:8285", 3000)) << d0->log();
  EXPECT_EQ(d0->log().find("re-listing"), std::string::npos) << d0->log();
  const std::string metrics = http_get(cluster_->node(0).name(), 9102, "/metrics");
  EXPECT_EQ(metric(metrics, "udpring_lease_relists_total"), 0) << metrics;
}

// More nodes than one list page (500): every page is read, from one
// consistent snapshot.
TEST_F(KubeLeases, PaginatedListRoutesEveryNode) {
  make(1, "10.0.0.0/8");
  api_->add_node(name(0), "10.60.0.0/24");
  Json bulk = Json::array();
  for (int i = 0; i < 1200; ++i) {
    bulk.push_back({{"metadata",
                     {{"name", "peer-" + std::to_string(i)},
                      {"annotations", KubeApi::flannel_annotations("192.168.78." + std::to_string(100 + i % 100))}}},
                    // 10.1.x.0/24 for i < 256, then 10.2.x.0/24, ...: all differ.
                    {"spec", {{"podCIDR", "10." + std::to_string(1 + i / 256) + "." +
                                              std::to_string(i % 256) + ".0/24"}}}});
  }
  api_->must("POST", "/_test/nodes", bulk);
  auto d0 = start(0, {"--healthz-port=9103"});
  ASSERT_FALSE(HasFailure());
  EXPECT_NE(d0->log().find("1201 peer lease(s)"), std::string::npos) << d0->log();
  const std::string metrics = http_get(cluster_->node(0).name(), 9103, "/metrics");
  EXPECT_EQ(metric(metrics, "udpring_routes"), 1200) << metrics;
  // The API server saw three list pages (limit=500, then two continues).
  const std::string api_log = api_->log();
  size_t pages = 0;
  for (size_t at = 0; (at = api_log.find("GET /api/v1/nodes?limit=500", at)) != std::string::npos; ++at) {
    ++pages;
  }
  EXPECT_EQ(pages, 3u) << api_log;
}

// In a pod: the API server from KUBERNETES_SERVICE_HOST/PORT, the
// service account's token and CA at their fixed path (a private mount
// namespace puts a test directory there), the node name from the pod's
// spec.nodeName, and a rotated token picked up without a restart.
TEST_F(KubeLeases, InClusterCredentialsPodNameAndTokenRotation) {
  make(1);
  api_->add_node(name(0), cidr(0));
  api_->must("POST", "/api/v1/namespaces/kube-flannel/pods",
             {{"metadata", {{"name", "kube-flannel-ds-x7k2p"}}}, {"spec", {{"nodeName", name(0)}}}});
  api_->set_user("sa-token-1", KubeApi::kFlannelUser, KubeApi::kFlannelRole);
  const std::string sa = cluster_->dir + "/serviceaccount";
  sh_ok("mkdir -p " + sa + " && cp " + api_->ca_file() + " " + sa + "/ca.crt");
  std::ofstream(sa + "/token") << "sa-token-1";
  const std::string script =
      "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && "
      "mount --bind " + sa + " /run/secrets/kubernetes.io/serviceaccount && exec env -u NODE_NAME "
      "KUBERNETES_SERVICE_HOST=192.168.78.1 KUBERNETES_SERVICE_PORT=6443 "
      "POD_NAME=kube-flannel-ds-x7k2p POD_NAMESPACE=kube-flannel " + std::string(UDPRINGD_PATH) +
      " --kube-subnet-mgr --net-config-path=" + cluster_->net_conf +
      " --iface=u0 --workers=1 --subnet-file=" + env_path(0);
  auto d0 = launch_argv(0, {"unshare", "--mount", "--propagation", "private", "sh", "-c", script});
  ASSERT_TRUE(d0->wait_for_log("udpringd ready", 15000)) << d0->log() << api_->log();
  EXPECT_NE(d0->log().find("node name node-0 (from pod kube-flannel/kube-flannel-ds-x7k2p)"),
            std::string::npos)
      << d0->log();
  EXPECT_NE(d0->log().find("in-cluster"), std::string::npos) << d0->log();
  EXPECT_EQ(Cluster::lease_from_env(env_path(0)), cidr(0));

  // kubelet rotates the token: a new file swapped in; the old token then
  // stops working. The next watch must come with the new one.
  api_->set_user("sa-token-2", KubeApi::kFlannelUser, KubeApi::kFlannelRole);
  std::ofstream(sa + "/token.new") << "sa-token-2";
  sh_ok("mv " + sa + "/token.new " + sa + "/token");
  api_->set_user("sa-token-1", KubeApi::kFlannelUser, {});
  api_->close_watches();
  api_->add_node("later", "10.60.50.0/24", KubeApi::flannel_annotations("192.168.78.80"));
  EXPECT_TRUE(d0->wait_for_log("route 10.60.50.0/24 -> 192.168.78.80:8285", 3000)) << d0->log();
  // The message, not the bare number: a log timestamp's milliseconds can be 403.
  EXPECT_EQ(d0->log().find("HTTP 403"), std::string::npos) << d0->log();
  EXPECT_EQ(d0->log().find("HTTP 401"), std::string::npos) << d0->log();
  EXPECT_EQ(d0->stop(), 0);
}

// Each misconfiguration is named with its fix; the daemon waits (503 on
// /readyz) instead of crash-looping, and comes up once it is fixed.
TEST_F(KubeLeases, WrongTokenIsNamedAndTheDaemonWaits) {
  make(1);
  api_->add_node(name(0), cidr(0));
  auto d0 = launch(0, {"--healthz-port=9104"}, api_->kubeconfig("not-a-token", "wrong"));
  EXPECT_TRUE(d0->wait_for_log("HTTP 401 Unauthorized", 5000)) << d0->log();
  EXPECT_TRUE(d0->wait_for_log("ServiceAccount", 100)) << d0->log();
  EXPECT_TRUE(d0->running());
  EXPECT_EQ(readyz(cluster_->node(0), 9104), 503);
  // Logged once, not at every retry.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  const std::string log = d0->log();
  const size_t first = log.find("HTTP 401 Unauthorized");
  EXPECT_EQ(log.find("HTTP 401 Unauthorized", first + 1), std::string::npos) << log;
  // The token becomes valid (e.g. the binding is created): it comes up.
  api_->set_user("not-a-token", KubeApi::kFlannelUser, KubeApi::kFlannelRole);
  EXPECT_TRUE(d0->wait_for_log("udpringd ready", 5000)) << d0->log();
}

TEST_F(KubeLeases, MissingRbacVerbNamesTheClusterRoleRule) {
  make(1, "10.60.0.0/16", {"pods/get", "nodes/get", "nodes/list", "nodes/watch"});
  api_->add_node(name(0), cidr(0));
  auto d0 = launch(0, {"--healthz-port=9105"});
  EXPECT_TRUE(d0->wait_for_log("HTTP 403 Forbidden", 5000)) << d0->log();
  const std::string log = d0->log();
  EXPECT_NE(log.find("cannot patch resource \"nodes/status\""), std::string::npos) << log;
  EXPECT_NE(log.find("the ClusterRole \"flannel\" must allow verb \"patch\" on resource "
                     "\"nodes/status\""),
            std::string::npos)
      << log;
  EXPECT_EQ(readyz(cluster_->node(0), 9105), 503);
  EXPECT_FALSE(d0->wait_for_log("udpringd ready", 1500));
  api_->set_user(KubeApi::kFlannelToken, KubeApi::kFlannelUser, KubeApi::kFlannelRole);
  EXPECT_TRUE(d0->wait_for_log("udpringd ready", 5000)) << d0->log();
}

TEST_F(KubeLeases, UntrustedServerCertificateIsNamed) {
  make(1);
  api_->add_node(name(0), cidr(0));
  make_test_pki(cluster_->dir + "/other-pki", "192.168.78.1");
  auto d0 = launch(0, {},
                   api_->kubeconfig(KubeApi::kFlannelToken, "other-ca",
                                    cluster_->dir + "/other-pki/ca.crt"));
  EXPECT_TRUE(d0->wait_for_log("certificate does not verify against " + cluster_->dir +
                                   "/other-pki/ca.crt",
                               5000))
      << d0->log();
  EXPECT_TRUE(d0->running());
}

TEST_F(KubeLeases, NoPodCidrYetWaitsWithAHintThenComesUp) {
  make(1);
  api_->add_node(name(0), "");
  auto d0 = launch(0, {"--healthz-port=9106"});
  EXPECT_TRUE(d0->wait_for_log("has no podCIDR yet", 5000)) << d0->log();
  EXPECT_TRUE(d0->wait_for_log("--allocate-node-cidrs=true --cluster-cidr=10.60.0.0/16", 100))
      << d0->log();
  EXPECT_EQ(readyz(cluster_->node(0), 9106), 503);
  EXPECT_TRUE(d0->running());
  // The controller manager assigns one ("" to a valid CIDR is allowed).
  api_->must("PATCH", "/api/v1/nodes/" + name(0),
             {{"spec", {{"podCIDR", "10.60.77.0/24"}, {"podCIDRs", {"10.60.77.0/24"}}}}},
             "application/strategic-merge-patch+json");
  EXPECT_TRUE(d0->wait_for_log("udpringd ready", 5000)) << d0->log();
  EXPECT_EQ(Cluster::lease_from_env(env_path(0)), "10.60.77.0/24");
  EXPECT_EQ(readyz(cluster_->node(0), 9106), 200);
}

// Answers of the wrong JSON types at each call (the node, the list, the
// watch) and a Node whose members are of the wrong types: each is counted
// once in udpring_control_input_errors_total{source="kube"} and retried or
// skipped; the daemon comes up, routes its peer and sets its condition.
TEST_F(KubeLeases, MalformedAnswersAndNodesAreCountedNotFatal) {
  make(2);
  api_->add_node(name(0), cidr(0));
  api_->add_node(name(1), cidr(1));
  // Annotations that are a string and a podCIDR that is a number.
  api_->must("POST", "/api/v1/nodes",
             {{"metadata", {{"name", "bad"}, {"annotations", "x"}}}, {"spec", {{"podCIDR", 5}}}});
  auto d1 = start(1, {"--healthz-port=9101"});
  ASSERT_FALSE(HasFailure());
  const std::string ip0 = Cluster::node_ip(0);
  const std::string n0 = "/api/v1/nodes/" + name(0);
  api_->sabotage("GET", n0, R"({"kind":"Node","metadata":"x"})", false, ip0);
  api_->sabotage("GET", n0, std::string(100000, '['), false, ip0);
  api_->sabotage("GET", "/api/v1/nodes", R"({"items":{"a":1}})", false, ip0);
  api_->sabotage("GET", "/api/v1/nodes", R"({"items":[{"metadata":{"name":7}}]})", false, ip0);
  api_->sabotage("GET", "/api/v1/nodes", R"({"items":[],"metadata":{"resourceVersion":5}})", false, ip0);
  api_->sabotage("GET", "/api/v1/nodes", "{\"type\":5,\"object\":{}}\n", true, ip0);
  api_->sabotage("GET", "/api/v1/nodes", "{\"type\":\"ADDED\",\"object\":[]}\n", true, ip0);
  api_->sabotage("GET", "/api/v1/nodes", "{\"type\":\"ERROR\",\"object\":{\"code\":true}}\n", true, ip0);
  const long long kBad = 8 + 1;  // the answers above, and node "bad" once

  auto d0 = start(0, {"--healthz-port=9100"});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(d0->wait_for_log("route " + cidr(1) + " -> " + Cluster::node_ip(1) + ":8285", 3000));
  for (int i = 0; i < 100 && api_->sabotage_pending() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(api_->sabotage_pending(), 0) << d0->log();
  EXPECT_TRUE(wait_metric(0, 9100, "udpring_control_input_errors_total{source=\"kube\"}", kBad, 5000))
      << d0->log();
  EXPECT_TRUE(wait_metric(1, 9101, "udpring_control_input_errors_total{source=\"kube\"}", 1, 2000));
  EXPECT_TRUE(wait_condition(name(0), "NetworkUnavailable", "False", 5000)) << d0->log();
  const std::string log = d0->log();
  for (const char* why : {"metadata is not an object", "nests arrays and objects more than 128 deep",
                          "\"items\" is an object, not an array", "\"name\" is a number, not a string",
                          "\"resourceVersion\" is a number, not a string",
                          "\"type\" is a number, not a string", "\"object\" is an array, not an object",
                          "\"code\" is a boolean, not an integer",
                          "node bad is not routed: metadata.annotations is not an object"}) {
    EXPECT_NE(log.find(why), std::string::npos) << why << "\n" << log;
  }
  EXPECT_TRUE(d0->running() && d1->running());
  // The watch is back: a new node is routed.
  api_->add_node("node-9", "10.60.9.0/24", KubeApi::flannel_annotations("192.168.78.99"));
  EXPECT_TRUE(d0->wait_for_log("route 10.60.9.0/24 -> 192.168.78.99:8285", 5000)) << d0->log();
}

// The stand-in's patch semantics are what the tests above rely on: a JSON
// merge patch of the conditions replaces the whole list (losing Ready),
// a strategic-merge patch merges by type.
TEST_F(KubeLeases, StandInMergesConditionsOnlyForStrategicMergePatches) {
  make(0);
  api_->add_node("a", "10.60.1.0/24");
  api_->add_node("b", "10.60.2.0/24");
  const Json patch = {{"status", {{"conditions", {{{"type", "NetworkUnavailable"}, {"status", "False"}}}}}}};
  api_->must("PATCH", "/api/v1/nodes/a/status", patch, "application/strategic-merge-patch+json");
  api_->must("PATCH", "/api/v1/nodes/b/status", patch, "application/merge-patch+json");
  EXPECT_EQ(condition("a", "Ready").value("status", ""), "True");
  EXPECT_TRUE(condition("b", "Ready").is_null());
  EXPECT_FALSE(condition("b", "NetworkUnavailable").is_null());
  // The status subresource leaves spec alone; podCIDR cannot change once set.
  api_->must("PATCH", "/api/v1/nodes/a/status", {{"spec", {{"podCIDR", "10.60.9.0/24"}}}},
             "application/strategic-merge-patch+json");
  EXPECT_EQ(api_->node("a")["spec"]["podCIDR"], "10.60.1.0/24");
  EXPECT_EQ(api_->call("PATCH", "/api/v1/nodes/a", {{"spec", {{"podCIDR", "10.60.9.0/24"}}}},
                       "application/strategic-merge-patch+json")
                .status,
            422);
  EXPECT_EQ(api_->call("GET", "/api/v1/nodes", nullptr, "", "bogus").status, 401);
  api_->set_user("reader", "reader", {"nodes/get"});
  EXPECT_EQ(api_->call("GET", "/api/v1/nodes/a", nullptr, "", "reader").status, 200);
  EXPECT_EQ(api_->call("GET", "/api/v1/nodes", nullptr, "", "reader").status, 403);
}

}  // namespace
}  // namespace udpring::test
