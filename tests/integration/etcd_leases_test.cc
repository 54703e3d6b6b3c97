// The etcd v3 lease store against Debian's etcd-server, started by the test
// in its own namespace: interop with what stock flanneld writes, discovery,
// the 8-node race, outages, compaction, renewal without orphan leases,
// authentication and TLS.

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/base64.h"
#include "tests/support/bad_leases.h"
#include "tests/support/cluster.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"

namespace udpring::test {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
constexpr const char* kPrefix = "/coreos.com/network";

class EtcdLeases : public ::testing::Test {
 protected:
  void SetUp() override {
    UDPRING_REQUIRE_INTEGRATION();
    if (sh("command -v etcd >/dev/null && command -v etcdctl >/dev/null") != 0) {
      FAIL() << "etcd-server and etcd-client are needed (scripts/install-deps.sh)";
    }
  }

  void make_cluster(int nodes, const std::string& config = R"({"Network":"10.60.0.0/16","Backend":{"Type":"udp"}})",
                    const std::string& etcd_scheme = "http") {
    cluster_ = std::make_unique<Cluster>(nodes);
    etcd_ = std::make_unique<Etcd>(cluster_->lan, "192.168.78.1", cluster_->dir + "/etcd",
                                   etcd_scheme == "https" ? cluster_->dir + "/pki" : "");
    put(std::string(kPrefix) + "/config", config);
  }

  void put(const std::string& key, const std::string& value, const std::string& lease = "") {
    std::ofstream(cluster_->dir + "/value") << value;
    etcd_->ctl("put " + key + (lease.empty() ? "" : " --lease=" + lease) + " < " + cluster_->dir +
               "/value");
  }
  std::string grant(int ttl) {
    // "lease 694d7b9a7e1f4a0b granted with TTL(86400s)"
    const std::string out = etcd_->ctl("lease grant " + std::to_string(ttl));
    return out.substr(6, out.find(' ', 6) - 6);
  }
  // The key's value and etcd lease ID (0 = none); nullopt if absent.
  std::optional<std::pair<std::string, int64_t>> get(const std::string& key) {
    const Json doc = Json::parse(etcd_->ctl("get " + key + " -w json"));
    if (!doc.contains("kvs")) return std::nullopt;
    const Json& kv = doc["kvs"][0];
    return std::make_pair(*core::base64_decode(kv["value"].get<std::string>()),
                          kv.value("lease", int64_t{0}));
  }
  // `key` still holds exactly `value` and no etcd lease: an untouched reservation.
  void expect_reservation(const std::string& key, const std::string& value) {
    const auto res = get(key);
    ASSERT_TRUE(res) << key << " is gone";
    EXPECT_EQ(res->first, value);
    EXPECT_EQ(res->second, 0);
  }
  size_t etcd_lease_count() {
    const std::string out = etcd_->ctl("lease list");  // "found N leases\n..."
    return std::stoul(out.substr(6));
  }

  std::string env_path(int i) const { return cluster_->dir + "/subnet-" + std::to_string(i) + ".env"; }
  std::vector<std::string> argv(int i, const std::vector<std::string>& extra) const {
    std::vector<std::string> a = {UDPRINGD_PATH, "--etcd-endpoints=" + etcd_->endpoint(),
                                  "--iface=u0", "--workers=1", "--subnet-file=" + env_path(i)};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::unique_ptr<Process> launch(int i, const std::vector<std::string>& extra = {}) {
    return std::make_unique<Process>(cluster_->node(i).name(), argv(i, extra),
                                     cluster_->dir + "/udpringd-" + std::to_string(i) + "-" +
                                         std::to_string(starts_++) + ".log");
  }
  std::unique_ptr<Process> start(int i, const std::vector<std::string>& extra = {}) {
    auto p = launch(i, extra);
    if (!p->wait_for_log("udpringd ready", 15000)) ADD_FAILURE() << "node " << i << ":\n" << p->log();
    return p;
  }
  std::string lease_of(int i) const { return Cluster::lease_from_env(env_path(i)); }
  // A /24 for a peer added by hand once nodes 0..n-1 run: 10.60.`third`.0/24,
  // or the next one up that none of them holds. Their leases are random
  // picks, so a fixed subnet was now and then a node's own, and a node that
  // sees its subnet taken over shuts down (as flanneld does).
  std::string unused_subnet(int third, int n) const {
    for (;; ++third) {
      const std::string subnet = "10.60." + std::to_string(third) + ".0/24";
      bool taken = false;
      for (int i = 0; i < n; ++i) taken = taken || lease_of(i) == subnet;
      if (!taken) return subnet;
    }
  }
  static std::string key_of(const std::string& subnet) {
    std::string k = std::string(kPrefix) + "/subnets/" + subnet;
    k[k.rfind('/')] = '-';
    return k;
  }
  static bool ping(const Netns& from, const std::string& ip) { return Cluster::ping(from, ip); }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<Etcd> etcd_;
  int starts_ = 0;
};

TEST_F(EtcdLeases, InteropWithStockFlanneldData) {
  make_cluster(1);
  const std::string lease = grant(86400);
  // Exactly what stock flanneld nodes write (docs/flannel-compat.md, leases in etcd).
  put(key_of("10.60.5.0/24"), R"({"PublicIP":"192.168.78.200","PublicIPv6":null})", lease);
  put(key_of("10.60.6.0/24"),
      R"({"PublicIP":"192.168.78.201","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"62:6f:2c:aa:bb:cc"}})",
      lease);
  const std::string reservation = R"({"PublicIP":"192.168.78.202","PublicIPv6":null})";
  put(key_of("10.60.7.0/24"), reservation);  // no lease: a reservation
  put(std::string(kPrefix) + "/subnets/not-a-subnet", "junk", lease);
  put(key_of("10.60.8.0/24"), "{not json", lease);

  auto d = start(0);
  ASSERT_FALSE(HasFailure());
  const std::string log = d->log();
  EXPECT_NE(log.find("route 10.60.5.0/24 -> 192.168.78.200:8285"), std::string::npos) << log;
  EXPECT_NE(log.find("route 10.60.6.0/24 -> 192.168.78.201:8285"), std::string::npos) << log;
  EXPECT_NE(log.find("BackendType vxlan"), std::string::npos) << log;
  EXPECT_NE(log.find("route 10.60.7.0/24 -> 192.168.78.202:8285"), std::string::npos) << log;
  EXPECT_NE(log.find("skipping etcd key /coreos.com/network/subnets/not-a-subnet"), std::string::npos);
  EXPECT_NE(log.find("skipping etcd key /coreos.com/network/subnets/10.60.8.0-24"), std::string::npos);
  // Our lease: flannel's exact value, on an etcd lease, not a taken subnet.
  const std::string own = lease_of(0);
  for (const char* taken : {"10.60.5.0/24", "10.60.6.0/24", "10.60.7.0/24", "10.60.8.0/24"}) {
    EXPECT_NE(own, taken);
  }
  const auto mine = get(key_of(own));
  ASSERT_TRUE(mine);
  EXPECT_EQ(mine->first, R"({"PublicIP":")" + Cluster::node_ip(0) + R"(","PublicIPv6":null})");
  EXPECT_NE(mine->second, 0);
  // flannel's subnetTTL: granted for 86400 s.
  char id[32];
  std::snprintf(id, sizeof id, "%llx", static_cast<unsigned long long>(mine->second));
  const std::string ttl = etcd_->ctl(std::string("lease timetolive ") + id);
  EXPECT_NE(ttl.find("granted with TTL(86400s)"), std::string::npos) << ttl;
  // The reservation is untouched: same value, still no lease.
  expect_reservation(key_of("10.60.7.0/24"), reservation);
}

TEST_F(EtcdLeases, ReservationForOurAddressIsUsedAndNeverConverted) {
  make_cluster(1);
  const std::string value = R"({"PublicIP":")" + Cluster::node_ip(0) + R"(","PublicIPv6":null})";
  put(key_of("10.60.42.0/24"), value);
  auto d = start(0);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(lease_of(0), "10.60.42.0/24");
  EXPECT_NE(d->log().find("reservation"), std::string::npos);
  EXPECT_EQ(d->stop(), 0);
  expect_reservation(key_of("10.60.42.0/24"), value);
}

TEST_F(EtcdLeases, RestartReusesItsLeaseAndRevokesTheOldEtcdLease) {
  make_cluster(1);
  auto d = start(0);
  ASSERT_FALSE(HasFailure());
  const std::string first = lease_of(0);
  const auto before = get(key_of(first));
  ASSERT_TRUE(before);
  const size_t leases = etcd_lease_count();
  EXPECT_EQ(d->stop(), 0);
  ::unlink(env_path(0).c_str());  // so the reuse must come from the PublicIP match
  d = start(0);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(lease_of(0), first);
  EXPECT_NE(d->log().find("existing lease of our public IP"), std::string::npos) << d->log();
  const auto after = get(key_of(first));
  ASSERT_TRUE(after);
  EXPECT_NE(after->second, before->second);   // moved onto a fresh etcd lease
  EXPECT_EQ(etcd_lease_count(), leases);      // and the old one was revoked
}

TEST_F(EtcdLeases, NodesDiscoverJoinAndLoseEachOther) {
  make_cluster(2);
  auto d0 = start(0, {"--healthz-port=9099"});
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());
  const std::string s0 = lease_of(0), s1 = lease_of(1);
  EXPECT_NE(s0, s1);
  const std::string pod0 = cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  EXPECT_TRUE(d0->wait_for_log("route " + s1 + " -> " + Cluster::node_ip(1) + ":8285", 2000));
  EXPECT_TRUE(d1->wait_for_log("route " + s0 + " -> " + Cluster::node_ip(0) + ":8285", 2000));
  EXPECT_TRUE(ping(cluster_->pod(0), pod1));

  // /readyz is 200 and /metrics counts the traffic as it flows.
  const std::string ns0 = cluster_->node(0).name();
  EXPECT_NE(http_get(ns0, 9099, "/readyz").find("200"), std::string::npos);
  auto counter = [&](const std::string& name) {
    return metric_value(http_get(ns0, 9099, "/metrics"), name).value_or(-1.0);
  };
  const double before = counter("udpring_tun_rx_packets_total");
  EXPECT_EQ(tcp_transfer_verified(cluster_->pod(1).name(), pod1, 5201, cluster_->pod(0).name(), 4u << 20),
            4u << 20);
  EXPECT_GT(counter("udpring_tun_rx_packets_total"), before);
  EXPECT_GT(counter("udpring_lease_expiry_timestamp_seconds"),
            static_cast<double>(std::time(nullptr)) + 80000);
  EXPECT_EQ(counter("udpring_routes"), 1.0);

  // A third node is reachable from pod 0 within 2 s of becoming ready.
  const int n2 = cluster_->add_node();
  auto d2 = start(n2);
  const std::string s2 = lease_of(n2);
  EXPECT_TRUE(Cluster::reachable_within(cluster_->pod(0), s2.substr(0, s2.find('/')), 2000)) << d0->log();

  // Deleting node 1's lease: node 0 unroutes it within 2 s; node 1 exits 1.
  const auto t0 = Clock::now();
  etcd_->ctl("del " + key_of(s1));
  EXPECT_TRUE(d0->wait_for_log("route " + s1 + " removed", 2000)) << d0->log();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(2100));
  EXPECT_EQ(d1->wait_exit(3000), 1);
  EXPECT_NE(d1->log().find("lease has been revoked"), std::string::npos) << d1->log();
  EXPECT_FALSE(ping(cluster_->pod(0), pod1));
}

TEST_F(EtcdLeases, EightDaemonsRacingGetEightSubnets) {
  // A /20 leaves 15 subnets: random picks among them collide often.
  make_cluster(8, R"({"Network":"10.60.0.0/20","Backend":{"Type":"udp"}})");
  std::vector<std::unique_ptr<Process>> daemons;
  for (int i = 0; i < 8; ++i) daemons.push_back(launch(i));
  std::set<std::string> subnets;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(daemons[i]->wait_for_log("udpringd ready", 20000)) << daemons[i]->log();
    subnets.insert(lease_of(i));
  }
  EXPECT_EQ(subnets.size(), 8u);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  size_t races = 0;
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(daemons[i]->running()) << daemons[i]->log();
    EXPECT_TRUE(daemons[i]->wait_for_log("7 peer route", 3000) ||
                daemons[i]->log().find(" removed") == std::string::npos);
    if (daemons[i]->log().find("taken by another node first") != std::string::npos) ++races;
  }
  // Every node routes the seven others.
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 8; ++j) {
      if (i == j) continue;
      EXPECT_TRUE(daemons[i]->wait_for_log("route " + lease_of(j) + " -> " + Cluster::node_ip(j), 3000))
          << i << " -> " << j;
    }
  }
  std::printf("lost creation races retried: %zu\n", races);
}

TEST_F(EtcdLeases, OutageAndCompactionKeepForwardingAndResync) {
  make_cluster(2);
  const std::string lease = grant(86400);
  put(key_of("10.60.90.0/24"), R"({"PublicIP":"192.168.78.90","PublicIPv6":null})", lease);
  auto d0 = start(0, {"--healthz-port=9099"});
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  cluster_->add_pod(0, env_path(0));
  ASSERT_TRUE(d0->wait_for_log("route 10.60.90.0/24 -> 192.168.78.90", 2000));

  // etcd down for 10 s: traffic keeps flowing on the routes we know.
  const auto down = Clock::now();
  etcd_->stop();
  EXPECT_TRUE(d0->wait_for_log("etcd watch:", 3000)) << d0->log();
  EXPECT_EQ(tcp_transfer_verified(cluster_->pod(1).name(), pod1, 5202, cluster_->pod(0).name(), 8u << 20),
            8u << 20);
  EXPECT_TRUE(ping(cluster_->pod(0), pod1));
  // Hold node 0 off etcd a little longer (its namespace only), so that the
  // changes below and a compaction happen before its watch comes back.
  const std::string ns0 = cluster_->node(0).exec();
  sh_ok(ns0 + "iptables -I OUTPUT -p tcp -d 192.168.78.1 --dport 2379 -j REJECT --reject-with tcp-reset");
  std::this_thread::sleep_until(down + std::chrono::seconds(10));
  etcd_->start();
  const std::string added = unused_subnet(91, 2);
  put(key_of(added), R"({"PublicIP":"192.168.78.91","PublicIPv6":null})", grant(86400));
  etcd_->ctl("del " + key_of("10.60.90.0/24"));
  etcd_->ctl("compact " + std::to_string(etcd_->revision()));
  sh_ok(ns0 + "iptables -D OUTPUT -p tcp -d 192.168.78.1 --dport 2379 -j REJECT --reject-with tcp-reset");

  EXPECT_TRUE(d0->wait_for_log("route " + added + " -> 192.168.78.91:8285", 8000)) << d0->log();
  EXPECT_TRUE(d0->wait_for_log("route 10.60.90.0/24 removed", 2000)) << d0->log();
  EXPECT_NE(d0->log().find("re-listing leases"), std::string::npos) << d0->log();
  EXPECT_NE(d0->log().find("etcd watch re-established"), std::string::npos) << d0->log();
  // The control thread publishes the store's health after it has applied
  // the events the log lines above announce: give it a moment.
  std::string metrics;
  for (int i = 0; i < 40; ++i) {
    metrics = http_get(cluster_->node(0).name(), 9099, "/metrics");
    if (metric(metrics, "udpring_lease_relists_total") >= 1 &&
        metric(metrics, "udpring_lease_watch_connected") == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const long long reconnects = metric(metrics, "udpring_lease_watch_reconnects_total");
  ASSERT_GE(reconnects, 0) << metrics;
  EXPECT_GT(reconnects, 0) << metrics;
  EXPECT_EQ(metric(metrics, "udpring_lease_relists_total"), 1) << metrics;
  EXPECT_EQ(metric(metrics, "udpring_lease_watch_connected"), 1) << metrics;
  EXPECT_TRUE(d0->running() && d1->running()) << "node 0:\n" << d0->log() << "\nnode 1:\n" << d1->log();
  EXPECT_TRUE(ping(cluster_->pod(0), pod1));
}

TEST_F(EtcdLeases, ShortTtlRenewsWithoutOrphanLeases) {
  make_cluster(1);
  const size_t baseline = etcd_lease_count();
  auto d = start(0, {"--subnet-lease-ttl=4"});  // renewed every 2 s
  ASSERT_FALSE(HasFailure());
  const std::string key = key_of(lease_of(0));
  const auto first = get(key);
  ASSERT_TRUE(first);
  std::set<int64_t> ids{first->second};
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const auto now = get(key);
    ASSERT_TRUE(now) << "lease expired:\n" << d->log();
    ids.insert(now->second);
    // A renewal holds two etcd leases for the moment between its grant and
    // its revoke (a few commits): an orphan is one still there after that.
    size_t leases = etcd_lease_count();
    for (int again = 0; again < 5 && leases > baseline + 1; ++again) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      leases = etcd_lease_count();
    }
    EXPECT_LE(leases, baseline + 1) << etcd_->ctl("lease list");
  }
  EXPECT_GE(ids.size(), 3u);  // several renewals, each onto a new etcd lease
  EXPECT_TRUE(d->running());
  EXPECT_EQ(d->stop(), 0);
}

// A renewal that falls due while etcd is down fails, is counted and is
// retried (every TTL/4) until etcd is back; then it is made, onto a new
// etcd lease, with no orphan left. etcd keeps its leases across its own
// restart (it extends them when it becomes leader), so the key is still
// ours when the retry comes.
TEST_F(EtcdLeases, ARenewalDueDuringAnOutageIsMadeWhenEtcdReturns) {
  make_cluster(1);
  const size_t baseline = etcd_lease_count();
  auto d = start(0, {"--subnet-lease-ttl=8", "--healthz-port=9097"});  // renewed every 4 s
  ASSERT_FALSE(HasFailure());
  const std::string key = key_of(lease_of(0));
  const auto first = get(key);
  ASSERT_TRUE(first);
  auto lease_metric = [&](const char* name) {
    return metric(http_get(cluster_->node(0).name(), 9097, "/metrics"), name);
  };
  etcd_->stop();
  const long long renewed_before = lease_metric("udpring_lease_renewals_total");
  ASSERT_GE(renewed_before, 0);
  EXPECT_TRUE(d->wait_for_log("renewing " + key + ": ", 8000)) << d->log();
  EXPECT_NE(d->log().find("retrying in 2 s"), std::string::npos) << d->log();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const long long failed = lease_metric("udpring_lease_renew_failures_total");
  EXPECT_GE(failed, 1);
  etcd_->start();

  long long renewed = renewed_before;
  for (int i = 0; i < 100 && renewed <= renewed_before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    renewed = lease_metric("udpring_lease_renewals_total");
  }
  EXPECT_GT(renewed, renewed_before) << "no renewal within 10 s of etcd's return\n" << d->log();
  const auto after = get(key);
  ASSERT_TRUE(after) << "the lease expired across the outage\n" << d->log();
  EXPECT_NE(after->second, first->second) << "still on the etcd lease of before the outage";
  EXPECT_EQ(after->first, first->first);
  size_t leases = etcd_lease_count();
  for (int again = 0; again < 10 && leases > baseline + 1; ++again) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    leases = etcd_lease_count();
  }
  EXPECT_LE(leases, baseline + 1) << etcd_->ctl("lease list");
  std::printf("renewals failed during the outage: %lld; renewals %lld -> %lld\n", failed, renewed_before,
              renewed);
  EXPECT_TRUE(d->running());
  EXPECT_EQ(d->stop(), 0);
}

TEST_F(EtcdLeases, UnreachableEtcdIsRetriedAndNamed) {
  make_cluster(1);
  etcd_->stop();
  auto d = launch(0);
  EXPECT_TRUE(d->wait_for_log("192.168.78.1:2379", 5000)) << d->log();
  EXPECT_TRUE(d->running());
  etcd_->start();
  EXPECT_TRUE(d->wait_for_log("udpringd ready", 8000)) << d->log();
}

TEST_F(EtcdLeases, PasswordAuthentication) {
  make_cluster(1);
  etcd_->ctl("user add root --new-user-password=s3cret --interactive=false");
  etcd_->ctl("auth enable");
  etcd_->set_auth("root:s3cret");
  auto bad = launch(0, {"--etcd-username=root", "--etcd-password=wrong"});
  EXPECT_TRUE(bad->wait_for_log("authentication as root failed", 5000)) << bad->log();
  bad->stop();
  // The first endpoint is dead (flanneld's default list starts with :4001):
  // requests and the authenticated watch both fail over to the second.
  auto good = start(0, {"--etcd-username=root", "--etcd-password=s3cret",
                        "--etcd-endpoints=http://192.168.78.1:4001," + etcd_->endpoint()});
  EXPECT_TRUE(get(key_of(lease_of(0))));
  const std::string peer = unused_subnet(93, 1);
  put(key_of(peer), R"({"PublicIP":"192.168.78.93","PublicIPv6":null})", grant(600));
  EXPECT_TRUE(good->wait_for_log("route " + peer + " -> 192.168.78.93:8285", 5000)) << good->log();
}

TEST_F(EtcdLeases, TlsClientCertificates) {
  make_cluster(1, R"({"Network":"10.60.0.0/16","Backend":{"Type":"udp"}})", "https");
  const std::string pki = cluster_->dir + "/pki";
  auto d = start(0, {"--etcd-cafile=" + pki + "/ca.crt", "--etcd-certfile=" + pki + "/client.crt",
                     "--etcd-keyfile=" + pki + "/client.key"});
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(get(key_of(lease_of(0))));
  // Without a client certificate etcd refuses us, and we say where.
  auto plain = launch(0, {"--etcd-cafile=" + pki + "/ca.crt", "--subnet-file="});
  EXPECT_TRUE(plain->wait_for_log("https://192.168.78.1:2379", 5000)) << plain->log();
}

// Leases that would steal, black-hole or loop traffic (core/lease_policy.h)
// are never routed: each is counted under its reason, the good peer stays
// routed and reachable (also the pod a /32 aimed at), and a node still
// allocates while 0.0.0.0-0 and the whole Network are leased. Once the
// earlier of two keys of one subnet goes, the later one is routed.
TEST_F(EtcdLeases, BadLeasesAreRefusedAndTheGoodPeerKeepsItsTraffic) {
  make_cluster(2);
  const std::string subnets = std::string(kPrefix) + "/subnets/";
  const std::string thief = R"({"PublicIP":"192.168.78.66","PublicIPv6":null})";
  put(subnets + "0.0.0.0-0", thief);  // reservations: no TTL
  put(subnets + "10.60.0.0-16", thief, grant(86400));
  auto d0 = start(0, {"--healthz-port=9099"});
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());
  const std::string s1 = lease_of(1);
  const std::string pod0 = cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  const std::vector<BadLease> bad = bad_leases(
      s1, pod1, Cluster::node_ip(0), "192.168.78.66",
      [&, third = 100](int) mutable {
        const std::string s = unused_subnet(third, 2);  // "10.60.X.0/24"
        third = std::stoi(s.substr(6)) + 1;
        return s;
      });
  const std::string lease = grant(86400);
  for (const BadLease& l : bad) {
    if (l.name == "0.0.0.0-0" || l.name == "10.60.0.0-16") continue;
    // Quoted: a dual-stack key has a '&'.
    put("'" + subnets + l.name + "'",
        R"({"PublicIP":")" + l.public_ip + R"(","PublicIPv6":null})", lease);
  }
  const std::string ns0 = cluster_->node(0).name();
  EXPECT_EQ(await_refusals(ns0, 9099, refusals_by_reason(bad), 1, 4000), "") << d0->log();
  for (const BadLease& l : bad) {
    EXPECT_NE(d0->log().find("not routing lease " + subnets + l.name + " "), std::string::npos)
        << l.name;
  }
  EXPECT_EQ(d0->log().find(" -> 192.168.78.66:8285"), std::string::npos) << d0->log();
  EXPECT_TRUE(ping(cluster_->pod(0), pod1));
  EXPECT_TRUE(ping(cluster_->pod(1), pod0));
  EXPECT_TRUE(d0->running() && d1->running());

  // Node 1's key goes: the later key of its subnet takes its place.
  etcd_->ctl("del " + key_of(s1));
  EXPECT_TRUE(d0->wait_for_log("route " + s1 + " -> 192.168.78.66:8285", 3000)) << d0->log();
  EXPECT_EQ(d1->wait_exit(3000), 1);
  const std::string overlap = "udpring_leases_refused_current{reason=\"overlap\"}";
  std::string m;
  for (int i = 0; i < 30; ++i) {
    m = http_get(ns0, 9099, "/metrics");
    if (metric(m, overlap) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(metric(m, overlap), 0) << m;
  EXPECT_EQ(metric(m, "udpring_leases_refused_total{reason=\"overlap\"}"), 1) << m;
}

}  // namespace
}  // namespace udpring::test
