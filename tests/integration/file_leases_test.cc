// The embedded file lease store end to end: daemons in separate network
// namespaces share a lease directory, allocate distinct subnets, route to
// each other with no static peers, notice joins, deletions and expiry.

#include <fcntl.h>
#include <sys/stat.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/support/bad_leases.h"
#include "tests/support/cluster.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"

namespace udpring::test {
namespace {

using Clock = std::chrono::steady_clock;

class FileLeases : public ::testing::Test {
 protected:
  void SetUp() override {
    UDPRING_REQUIRE_INTEGRATION();
    cluster_ = std::make_unique<Cluster>(2);
    lease_dir_ = cluster_->lease_dir();
    std::filesystem::create_directories(lease_dir_);
    std::filesystem::copy_file(cluster_->net_conf, lease_dir_ + "/config");
  }

  std::string env_path(int i) const { return cluster_->subnet_env(i); }

  std::unique_ptr<Process> start(int i, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> flags = {"--workers=1"};
    flags.insert(flags.end(), extra.begin(), extra.end());
    return cluster_->start_on_file_store(i, flags);
  }

  // "10.60.7.0/24" from FLANNEL_SUBNET=10.60.7.1/24.
  std::string lease_of(int i) const { return Cluster::lease_from_env(env_path(i)); }
  std::string lease_file(int i) const {
    std::string l = lease_of(i);
    l[l.find('/')] = '-';
    return lease_dir_ + "/subnets/" + l;
  }

  static bool ping(const Netns& from, const std::string& ip) { return Cluster::ping(from, ip); }

  // A lease file as a node would write it: `name` in subnets/, naming
  // `ip`, expiring in an hour; renamed into place, so no scan sees it half
  // written.
  void write_lease(const std::string& name, const std::string& ip) {
    const std::string tmp = lease_dir_ + "/subnets/.test-" + std::to_string(writes_++);
    std::ofstream(tmp) << R"({"PublicIP":")" + ip + R"(","PublicIPv6":null})";
    const timespec t[2] = {{std::time(nullptr) + 3600, 0}, {std::time(nullptr) + 3600, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, tmp.c_str(), t, 0), 0);
    std::filesystem::rename(tmp, lease_dir_ + "/subnets/" + name);
  }

  std::unique_ptr<Cluster> cluster_;
  std::string lease_dir_;
  int writes_ = 0;
};

TEST_F(FileLeases, TwoNodesAllocateDistinctSubnetsAndCarryTraffic) {
  auto d0 = start(0);
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());
  const std::string s0 = lease_of(0), s1 = lease_of(1);
  EXPECT_NE(s0, s1);
  // flannel's defaults for 10.60.0.0/16: /24 leases, the first one skipped.
  EXPECT_EQ(s0.substr(s0.size() - 3), "/24");
  EXPECT_NE(s0, "10.60.0.0/24");
  // The lease files hold exactly what a stock udp node writes to etcd.
  std::ifstream f(lease_file(1));
  std::string value((std::istreambuf_iterator<char>(f)), {});
  EXPECT_EQ(value, R"({"PublicIP":")" + Cluster::node_ip(1) + R"(","PublicIPv6":null})");

  const std::string pod0 = cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  EXPECT_TRUE(d0->wait_for_log("route " + s1 + " -> " + Cluster::node_ip(1) + ":8285", 2000))
      << d0->log();
  EXPECT_TRUE(ping(cluster_->pod(0), pod1));
  EXPECT_TRUE(ping(cluster_->pod(1), pod0));
  EXPECT_EQ(tcp_transfer_verified(cluster_->pod(1).name(), pod1, 5201, cluster_->pod(0).name(),
                                  8u << 20),
            8u << 20);
}

TEST_F(FileLeases, RestartReusesTheLeaseOfItsPublicIp) {
  auto d0 = start(0);
  const std::string first = lease_of(0);
  struct stat before{};
  ASSERT_EQ(stat(lease_file(0).c_str(), &before), 0);
  EXPECT_EQ(d0->stop(), 0);
  std::filesystem::remove(env_path(0));  // not from subnet.env: from the store
  d0 = start(0);
  EXPECT_EQ(lease_of(0), first);
  EXPECT_NE(d0->log().find("existing lease of our public IP"), std::string::npos) << d0->log();
  // Renewed in place, not replaced: the file keeps its birth time, which is
  // its place in the creation order that decides overlaps.
  struct stat after{};
  ASSERT_EQ(stat(lease_file(0).c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_GE(after.st_mtime, before.st_mtime);
}

TEST_F(FileLeases, JoinIsRoutedAndDeletionUnroutedWithinTwoSeconds) {
  auto d0 = start(0);
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());
  cluster_->add_pod(0, env_path(0));
  const int n2 = cluster_->add_node();
  auto d2 = start(n2);
  // Node 2's flannel0 holds its lease base: reachable from pod 0 through the
  // overlay once node 0 has routed the new lease.
  const std::string s2 = lease_of(n2);
  EXPECT_TRUE(Cluster::reachable_within(cluster_->pod(0), s2.substr(0, s2.find('/')), 2000)) << d0->log();

  // Deleting node 1's lease: node 0 drops the route, node 1 exits non-zero.
  const std::string s1 = lease_of(1);
  const auto t0 = Clock::now();
  std::filesystem::remove(lease_file(1));
  EXPECT_TRUE(d0->wait_for_log("route " + s1 + " removed", 2000)) << d0->log();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(2100));
  EXPECT_EQ(d1->wait_exit(3000), 1);
  EXPECT_NE(d1->log().find("lease has been revoked"), std::string::npos) << d1->log();
}

TEST_F(FileLeases, ShortTtlIsRenewedAndExpiresWhenTheOwnerDies) {
  auto d0 = start(0, {"--subnet-lease-ttl=3"});
  auto d1 = start(1, {"--subnet-lease-ttl=3"});
  ASSERT_FALSE(HasFailure());
  const std::string s1 = lease_of(1);
  struct stat before{};
  ASSERT_EQ(stat(lease_file(1).c_str(), &before), 0);
  // Several renewals (every 1.5 s): the lease outlives its TTL and stays routed.
  std::this_thread::sleep_for(std::chrono::seconds(7));
  struct stat after{};
  ASSERT_EQ(stat(lease_file(1).c_str(), &after), 0);
  EXPECT_GT(after.st_mtime, before.st_mtime + 3);
  EXPECT_EQ(d0->log().find("route " + s1 + " removed"), std::string::npos) << d0->log();
  EXPECT_TRUE(d0->running() && d1->running());
  // A killed owner stops renewing: the lease expires and its route goes.
  kill(d1->pid(), SIGKILL);
  EXPECT_TRUE(d0->wait_for_log("route " + s1 + " removed", 6000)) << d0->log();
}

TEST_F(FileLeases, BadLeaseFilesAreSkippedNotFatal) {
  std::filesystem::create_directories(lease_dir_ + "/subnets");
  std::ofstream(lease_dir_ + "/subnets/garbage") << "x";
  std::ofstream(lease_dir_ + "/subnets/10.60.9.0-24") << "{not json";
  auto d0 = start(0);
  ASSERT_FALSE(HasFailure());
  EXPECT_NE(d0->log().find("skipping lease file"), std::string::npos) << d0->log();
  EXPECT_NE(lease_of(0), "10.60.9.0/24");  // the unparseable file still holds its name
  EXPECT_TRUE(d0->running());
}

// A previous subnet.env's FLANNEL_SUBNET is taken again when it is free and
// fits the config (flannel's second choice, after a lease of our PublicIP).
TEST_F(FileLeases, PreviousSubnetEnvIsReused) {
  std::ofstream(env_path(0)) << "FLANNEL_NETWORK=10.60.0.0/16\nFLANNEL_SUBNET=10.60.77.1/24\n"
                                "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n";
  auto d0 = start(0);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(lease_of(0), "10.60.77.0/24");
  EXPECT_NE(d0->log().find("subnet of the previous subnet.env"), std::string::npos) << d0->log();
  // Held by node 0 now: node 1 with the same previous file gets another one.
  std::ofstream(env_path(1)) << "FLANNEL_SUBNET=10.60.77.1/24\n";
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());
  EXPECT_NE(lease_of(1), "10.60.77.0/24");
}

// --public-ip is what the lease advertises (a NAT'ed address needs --iface).
TEST_F(FileLeases, PublicIpIsAdvertised) {
  auto d0 = start(0, {"--public-ip=203.0.113.5"});
  ASSERT_FALSE(HasFailure());
  std::ifstream f(lease_file(0));
  std::string value((std::istreambuf_iterator<char>(f)), {});
  EXPECT_EQ(value, R"({"PublicIP":"203.0.113.5","PublicIPv6":null})");
  // Without --iface the address must be local: a clear refusal otherwise.
  Process p(cluster_->node(1).name(),
            {UDPRINGD_PATH, "--subnet-mgr=file", "--lease-dir=" + lease_dir_,
             "--public-ip=203.0.113.6", "--subnet-file="},
            cluster_->dir + "/nat.log");
  EXPECT_EQ(p.wait_exit(5000), 1);
  EXPECT_NE(p.log().find("--public-ip 203.0.113.6 is not on any interface"), std::string::npos)
      << p.log();
}

// --ip-masq: flannel's rules in its order in the node's namespace, restored
// within one resync period after one is deleted by hand.
TEST_F(FileLeases, IpMasqRulesInOrderAndRestored) {
  auto d0 = start(0, {"--ip-masq", "--iptables-resync=1"});
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(Cluster::env_value(env_path(0), "FLANNEL_IPMASQ"), "true");
  const std::string s = lease_of(0);
  const std::string n = "10.60.0.0/16";
  const std::string c = " -m comment --comment \"flanneld masq\"";
  const std::string rf = sh(cluster_->node(0).exec() + "iptables -j MASQUERADE --help 2>/dev/null | "
                                                       "grep -q random-fully") == 0
                             ? " --random-fully"
                             : "";
  const std::string want =
      "-A POSTROUTING" + c + " -j FLANNEL-POSTRTG\n"
      "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000" + c + " -j RETURN\n"
      "-A FLANNEL-POSTRTG -s " + s + " -d " + n + c + " -j RETURN\n"
      "-A FLANNEL-POSTRTG -s " + n + " -d " + s + c + " -j RETURN\n"
      "-A FLANNEL-POSTRTG ! -s " + n + " -d " + s + c + " -j RETURN\n"
      "-A FLANNEL-POSTRTG -s " + n + " ! -d 224.0.0.0/4" + c + " -j MASQUERADE" + rf + "\n"
      "-A FLANNEL-POSTRTG ! -s " + n + " -d " + n + c + " -j MASQUERADE" + rf + "\n";
  const std::string save = cluster_->node(0).exec() + "iptables-save -t nat | grep '^-A'";
  EXPECT_EQ(sh_out(save), want);
  const std::string fwd = sh_out(cluster_->node(0).exec() + "iptables-save -t filter | grep '^-A'");
  EXPECT_NE(fwd.find("-A FLANNEL-FWD -s " + n + " -m comment --comment \"flanneld forward\" -j ACCEPT"),
            std::string::npos) << fwd;

  sh_ok(cluster_->node(0).exec() + "iptables -t nat -D FLANNEL-POSTRTG -s " + n + " -d " + s + c +
        " -j RETURN");
  EXPECT_NE(sh_out(save), want);
  bool restored = false;
  for (int i = 0; i < 30 && !restored; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    restored = sh_out(save) == want;
  }
  EXPECT_TRUE(restored) << sh_out(save) << d0->log();
  EXPECT_TRUE(d0->running());
}

// Leases that would steal, black-hole or loop traffic (core/lease_policy.h)
// are never routed: each is counted under its reason, the good peer stays
// routed and reachable (also the pod a /32 aimed at), and a node still
// allocates while 0.0.0.0-0 and the whole Network are "leased". Once the
// earlier of two leases of one subnet goes, the later one is routed.
TEST_F(FileLeases, BadLeasesAreRefusedAndTheGoodPeerKeepsItsTraffic) {
  std::filesystem::create_directories(lease_dir_ + "/subnets");
  write_lease("0.0.0.0-0", "192.168.78.66");
  write_lease("10.60.0.0-16", "192.168.78.66");
  auto d0 = start(0, {"--healthz-port=9099"});
  auto d1 = start(1);
  ASSERT_FALSE(HasFailure());
  const std::string s1 = lease_of(1);
  const std::string pod0 = cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  const std::string s0 = lease_of(0);
  auto free_subnet = [&, third = 100](int) mutable {
    std::string s;
    do {
      s = "10.60." + std::to_string(third++) + ".0/24";
    } while (s == s0 || s == s1);
    return s;
  };
  const std::vector<BadLease> bad =
      bad_leases(s1, pod1, Cluster::node_ip(0), "192.168.78.66", free_subnet);
  for (const BadLease& l : bad) {
    if (l.name != "0.0.0.0-0" && l.name != "10.60.0.0-16") write_lease(l.name, l.public_ip);
  }
  const std::string ns0 = cluster_->node(0).name();
  const std::string diff = await_refusals(ns0, 9099, refusals_by_reason(bad), 1, 4000);
  EXPECT_EQ(diff, "") << d0->log();
  for (const BadLease& l : bad) {
    EXPECT_NE(d0->log().find("not routing lease " + l.name + " "), std::string::npos) << l.name;
  }
  EXPECT_EQ(d0->log().find(" -> 192.168.78.66:8285"), std::string::npos) << d0->log();
  EXPECT_TRUE(ping(cluster_->pod(0), pod1));
  EXPECT_TRUE(ping(cluster_->pod(1), pod0));
  EXPECT_TRUE(d0->running() && d1->running());

  // Node 1's lease goes: the later lease of its subnet takes its place.
  std::filesystem::remove(lease_file(1));
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
