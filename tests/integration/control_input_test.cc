// Control-plane input that cannot stop the daemon: etcd answers of the
// wrong JSON types, 100,000 '[' and lines that never end (from a stand-in,
// tests/support/etcd_stand_in.py, since real etcd never sends them), an
// etcd that does not answer at all, and a file store whose directory holds
// FIFOs, symlinks to /dev/zero, huge files and a deeply nested net-conf.
// Each time the daemon stays up, counts what it rejected in
// udpring_control_input_errors_total, and serves once the input is sane.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/base64.h"
#include "tests/support/cluster.h"
#include "tests/support/etcd_stand_in.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"

namespace udpring::test {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

const std::string kConfigKey = "/coreos.com/network/config";
const std::string kSubnets = "/coreos.com/network/subnets/";
const std::string kNetConf = R"({"Network":"10.60.0.0/16","Backend":{"Type":"udp"}})";
// Valid JSON, 20,000 levels deep and 40 KB: within the size limit, far
// beyond the depth one (dump() of it used to overflow the stack).
const std::string kDeepNetConf = R"({"Network":"10.60.0.0/16","x":)" + std::string(20000, '[') +
                                 std::string(20000, ']') + "}";

std::string b64(const std::string& s) { return core::base64_encode(s); }

std::string value_of(const std::string& ip) { return R"({"PublicIP":")" + ip + R"(","PublicIPv6":null})"; }

long long input_errors(const std::string& metrics, const std::string& source) {
  return metric(metrics, "udpring_control_input_errors_total{source=\"" + source + "\"}");
}

class ControlInput : public ::testing::Test {
 protected:
  void SetUp() override { UDPRING_REQUIRE_INTEGRATION(); }

  std::string env_path(int i) const { return cluster_->dir + "/subnet-" + std::to_string(i) + ".env"; }
  std::unique_ptr<Process> launch(int i, std::vector<std::string> argv) {
    argv.insert(argv.begin(), {UDPRINGD_PATH, "--iface=u0", "--workers=1",
                               "--subnet-file=" + env_path(i),
                               "--healthz-port=" + std::to_string(9110 + i)});
    return std::make_unique<Process>(cluster_->node(i).name(), argv,
                                     cluster_->dir + "/udpringd-" + std::to_string(i) + "-" +
                                         std::to_string(starts_++) + ".log");
  }
  std::string get(int i, const std::string& path) const {
    return http_get(cluster_->node(i).name(), static_cast<uint16_t>(9110 + i), path);
  }
  // Polls node i's /metrics until `source` counts `want`; the last count seen.
  long long wait_input_errors(int i, const std::string& source, long long want, int ms) const {
    long long seen = -1;
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    do {
      seen = input_errors(get(i, "/metrics"), source);
      if (seen == want) return seen;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    } while (Clock::now() < deadline);
    return seen;
  }
  std::string lease_of(int i) const { return Cluster::lease_from_env(env_path(i)); }

  std::unique_ptr<Cluster> cluster_;
  int starts_ = 0;
};

class EtcdInput : public ControlInput {
 protected:
  void SetUp() override {
    ControlInput::SetUp();
    if (IsSkipped()) return;
    cluster_ = std::make_unique<Cluster>(2);
    etcd_ = std::make_unique<EtcdStandIn>(cluster_->lan, "192.168.78.1", cluster_->dir + "/etcd");
    etcd_->put(kConfigKey, kNetConf);
  }
  std::unique_ptr<Process> launch_etcd(int i, std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), "--etcd-endpoints=" + etcd_->endpoint());
    return launch(i, extra);
  }
  void TearDown() override {
    if (HasFailure() && etcd_) std::printf("etcd stand-in:\n%s\n", etcd_->log().c_str());
  }

  std::unique_ptr<EtcdStandIn> etcd_;
};

// Every kind of malformed answer, at every call the daemon makes: it stays
// up, says why it is not ready yet, counts each one exactly once, and
// forwards once the answers are sane.
TEST_F(EtcdInput, MalformedAnswersAreCountedAndRetriedNeverFatal) {
  // Lease data that is not a lease, in every listing: skipped, counted once.
  etcd_->put(kSubnets + "junk", "x");
  etcd_->set_raw_kvs({7, {{"key", b64(kSubnets + "10.60.201.0-24")},
                          {"value", b64(value_of("192.168.78.201"))},
                          {"lease", "abc"}}});
  const int kRawBad = 3;
  auto d1 = launch_etcd(1);
  ASSERT_TRUE(d1->wait_for_log("udpringd ready", 15000)) << d1->log();

  const std::string ip0 = Cluster::node_ip(0);
  using R = EtcdStandIn;
  const Json config_rules = {
      // Authentication (each attempt at the config logs in again).
      R::rule("/v3/auth/authenticate", R"({"token":5})", ip0),
      R::rule("/v3/auth/authenticate", R"({"token":"t\r\nX-Injected: 1"})", ip0),
      // The config key.
      R::rule("/v3/kv/range", R"({"kvs":{"0":{}}})", ip0, kConfigKey),
      R::rule("/v3/kv/range", std::string(100000, '['), ip0, kConfigKey),
      R::rule("/v3/kv/range", R"({"kvs":[{"key":"eA==","value":5}]})", ip0, kConfigKey),
      R::rule("/v3/kv/range",
              Json({{"kvs", {{{"key", b64(kConfigKey)}, {"value", b64(kDeepNetConf)}}}}}).dump(), ip0,
              kConfigKey),
  };
  const int kConfigBad = 6;
  const Json lease_rules = {
      // Acquisition: the listing, the grant, the creating txn.
      R::rule("/v3/kv/range", R"({"header":{"revision":"twelve"}})", ip0, kSubnets),
      R::rule("/v3/kv/range", R"({"header":{"revision":"5"},"kvs":"none"})", ip0, kSubnets),
      R::rule("/v3/lease/grant", R"({"ID":{"id":1}})", ip0),
      R::rule("/v3/kv/txn", R"({"succeeded":"true"})", ip0),
      // The watch: one message per stream, then the stream ends.
      R::rule("/v3/watch", "{\"result\":{\"created\":\"yes\"}}\n", ip0),
      R::rule("/v3/watch", "{\"result\":{\"events\":{\"kv\":{}}}}\n", ip0),
      R::rule("/v3/watch", "{\"result\":{\"events\":[{\"kv\":{\"key\":\"eA==\",\"mod_revision\":{}}}]}}\n", ip0),
      R::rule("/v3/watch", std::string(100000, '[') + "\n", ip0),
      R::rule("/v3/watch", std::string(33u << 20, 'x'), ip0),  // a line that never ends
  };
  const int kLeaseBad = 9;
  etcd_->add_rules(config_rules);
  etcd_->add_rules(lease_rules);

  // Renewed every 3 s, with a user: so that every call above is made.
  auto d0 = launch_etcd(0, {"--subnet-lease-ttl=6", "--etcd-username=root", "--etcd-password=pw"});
  // While it cannot have a config: alive, not ready, and saying why.
  bool seen_before_ready = false;
  for (int i = 0; i < 100 && !seen_before_ready; ++i) {
    const std::string m = get(0, "/metrics");
    seen_before_ready = m.find("# udpringd is starting") != std::string::npos &&
                        input_errors(m, "config") >= 1;
    if (!seen_before_ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(seen_before_ready) << d0->log();
  EXPECT_EQ(get(0, "/healthz").rfind("HTTP/1.0 200", 0), 0u);
  EXPECT_EQ(get(0, "/readyz").rfind("HTTP/1.0 503", 0), 0u);
  ASSERT_TRUE(d0->wait_for_log("udpringd ready", 40000)) << d0->log();

  // The renewals' answers, queued once it is up: a grant ID that is no
  // number, a txn verdict that is no boolean, a revoke that is no JSON.
  const Json renew_rules = {
      R::rule("/v3/lease/grant", R"({"ID":"0x12"})", ip0),
      R::rule("/v3/kv/txn", R"({"succeeded":["true"]})", ip0),
      R::rule("/v3/lease/revoke", R"({"header":)", ip0),
  };
  const int kRenewBad = 3;
  etcd_->add_rules(renew_rules);
  EXPECT_TRUE(etcd_->wait_drained(30000)) << etcd_->stats().dump() << "\n" << d0->log();
  EXPECT_EQ(etcd_->stats()["served"], kConfigBad + kLeaseBad + kRenewBad + 0);

  // Each rejection counted once, by source.
  EXPECT_EQ(wait_input_errors(0, "config", kConfigBad, 5000), kConfigBad) << d0->log();
  EXPECT_EQ(wait_input_errors(0, "etcd", kLeaseBad + kRenewBad + kRawBad, 5000),
            kLeaseBad + kRenewBad + kRawBad)
      << d0->log();
  const std::string log = d0->log();
  for (const char* why : {
           "the answer has no token usable in a header",
           "\"kvs\" is an object, not an array",
           "nests arrays and objects more than 64 deep",
           "net-conf nests arrays and objects more than 32 deep",
           "\"revision\" \"twelve\" is not a 64-bit integer",
           "\"kvs\" is a string, not an array",
           "\"succeeded\" is a string, not a boolean",
           "\"created\" is a string, not a boolean",
           "a message of more than 33554432 bytes",
           "\"ID\" \"0x12\" is not a 64-bit integer",
           "skipping etcd key /coreos.com/network/subnets/junk",
           "skipping an etcd kv",
       }) {
    EXPECT_NE(log.find(why), std::string::npos) << why << "\n" << log;
  }

  // It forwards: routes to node 1, pods talk, renewals go on.
  const std::string pod0 = cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  EXPECT_TRUE(d0->wait_for_log("route " + lease_of(1) + " -> " + Cluster::node_ip(1) + ":8285", 5000));
  EXPECT_TRUE(Cluster::reachable_within(cluster_->pod(0), pod1, 5000)) << d0->log();
  EXPECT_TRUE(Cluster::ping(cluster_->pod(1), pod0));
  bool renewed = false;
  for (int i = 0; i < 80 && !renewed; ++i) {
    renewed = metric(get(0, "/metrics"), "udpring_lease_renewals_total") >= 1;
    if (!renewed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(renewed) << d0->log();
  EXPECT_TRUE(d0->running());
  EXPECT_TRUE(d1->running());
  EXPECT_EQ(d0->stop(), 0);
}

// An etcd that takes a request and never answers holds up nothing on the
// control thread: not lease events while a renewal waits, not SIGTERM
// while a start-up request waits.
TEST_F(EtcdInput, AnEtcdThatNeverAnswersHoldsUpNeitherEventsNorSigterm) {
  const std::string ip0 = Cluster::node_ip(0);
  // The first grant (acquisition) is answered; the next one (the first
  // renewal, 2 s later) is held for 30 s.
  etcd_->add_rules({{{"path", "/v3/lease/grant"}, {"client", ip0}, {"after", 1},
                     {"answers", {{{"hang", 30}}}}}});
  auto d0 = launch_etcd(0, {"--subnet-lease-ttl=4"});
  ASSERT_TRUE(d0->wait_for_log("udpringd ready", 15000)) << d0->log();
  ASSERT_TRUE(etcd_->wait_held("/v3/lease/grant", 5000)) << d0->log();
  // A new peer is routed while the renewal waits (it took up to 5 s, the
  // renewal's timeout, when renewals ran on the control thread).
  // Its subnet is any but the one node 0 picked at random (a lease on top
  // of node 0's own revokes it, as in flanneld).
  const std::string peer = lease_of(0) == "10.60.77.0/24" ? "10.60.78.0" : "10.60.77.0";
  auto t0 = Clock::now();
  etcd_->put(kSubnets + peer + "-24", value_of("192.168.78.77"));
  EXPECT_TRUE(d0->wait_for_log("route " + peer + "/24 -> 192.168.78.77:8285", 2000)) << d0->log();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(2000));
  EXPECT_EQ(get(0, "/readyz").rfind("HTTP/1.0 200", 0), 0u);
  // SIGTERM: out within about a second (libcurl's progress interval), with
  // the renewal still held; the control thread used to wait for its 5 s.
  t0 = Clock::now();
  EXPECT_EQ(d0->stop(4000), 0) << d0->log();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(2500));

  // At start-up: the config request is held; SIGTERM still ends it at once
  // (it waited for the request's 5 s timeout).
  etcd_->add_rules({{{"path", "/v3/kv/range"}, {"key", kConfigKey}, {"client", ip0},
                     {"answers", {{{"hang", 30}}}}}});
  auto d = launch_etcd(0);
  ASSERT_TRUE(etcd_->wait_held("/v3/kv/range", 5000)) << d->log();
  t0 = Clock::now();
  EXPECT_EQ(d->stop(4000), 0) << d->log();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(2500)) << d->log();
}

class FileInput : public ControlInput {
 protected:
  void SetUp() override {
    ControlInput::SetUp();
    if (IsSkipped()) return;
    cluster_ = std::make_unique<Cluster>(2);
    dir_ = cluster_->dir + "/leases";
    std::filesystem::create_directories(dir_ + "/subnets");
  }
  std::unique_ptr<Process> launch_file(int i) {
    return launch(i, {"--subnet-mgr=file", "--lease-dir=" + dir_});
  }
  std::string dir_;
};

// A directory anyone may write to: entries that are not small regular
// files are skipped and counted once each, never read, and never block the
// daemon that finds them at start-up or while running.
TEST_F(FileInput, FifosSymlinksDevicesAndHugeFilesAreSkipped) {
  std::filesystem::copy_file(cluster_->net_conf, dir_ + "/config");
  auto d1 = launch_file(1);
  ASSERT_TRUE(d1->wait_for_log("udpringd ready", 10000)) << d1->log();

  const std::string s = dir_ + "/subnets/";
  ASSERT_EQ(mkfifo((s + "10.60.250.0-24").c_str(), 0644), 0);
  ASSERT_EQ(symlink("/dev/zero", (s + "10.60.251.0-24").c_str()), 0);
  // Files are written beside the directory and renamed in, as a writer of
  // leases does: node 1 watches and would count a half-written one too.
  const std::string staged = cluster_->dir + "/staged";
  std::ofstream(staged).close();
  ASSERT_EQ(truncate(staged.c_str(), off_t{1} << 30), 0);  // 1 GiB, sparse
  std::filesystem::rename(staged, s + "10.60.252.0-24");
  std::ofstream(staged) << value_of("192.168.78.253") << std::string(8192, ' ');
  std::filesystem::rename(staged, s + "10.60.253.0-24");
  std::filesystem::create_directory(s + "10.60.254.0-24");
  std::ofstream(cluster_->dir + "/elsewhere") << value_of("192.168.78.249");
  ASSERT_EQ(symlink((cluster_->dir + "/elsewhere").c_str(), (s + "10.60.249.0-24").c_str()), 0);
  const long long kBad = 6;

  // Node 1 scans them (inotify) and keeps serving.
  EXPECT_EQ(wait_input_errors(1, "file", kBad, 5000), kBad) << d1->log();
  // Node 0 starts on that directory, is ready at once and routes node 1.
  const auto t0 = Clock::now();
  auto d0 = launch_file(0);
  ASSERT_TRUE(d0->wait_for_log("udpringd ready", 10000)) << d0->log();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  EXPECT_TRUE(d0->wait_for_log("route " + lease_of(1) + " -> " + Cluster::node_ip(1) + ":8285", 2000))
      << d0->log();
  EXPECT_TRUE(d1->wait_for_log("route " + lease_of(0) + " -> " + Cluster::node_ip(0) + ":8285", 3000))
      << d1->log();
  const std::string pod0 = cluster_->add_pod(0, env_path(0));
  const std::string pod1 = cluster_->add_pod(1, env_path(1));
  EXPECT_TRUE(Cluster::reachable_within(cluster_->pod(0), pod1, 5000));
  EXPECT_TRUE(Cluster::ping(cluster_->pod(1), pod0));
  // None of the bad names became a route.
  for (const char* bad : {"10.60.249.0", "10.60.250.0", "10.60.251.0", "10.60.252.0", "10.60.253.0",
                          "10.60.254.0"}) {
    EXPECT_EQ(d0->log().find(std::string("route ") + bad), std::string::npos) << bad;
  }
  const std::string log = d0->log();
  for (const char* why : {"is a FIFO, not a regular file", "is a symbolic link, not a regular file",
                          "1073741824 bytes, more than 4096", "bytes, more than 4096",
                          "is a directory, not a regular file"}) {
    EXPECT_NE(log.find(why), std::string::npos) << why << "\n" << log;
  }
  // Counted once each, not once per rescan (every second).
  EXPECT_EQ(input_errors(get(0, "/metrics"), "file"), kBad);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(input_errors(get(0, "/metrics"), "file"), kBad);
  EXPECT_EQ(input_errors(get(1, "/metrics"), "file"), kBad);
  EXPECT_TRUE(d0->running() && d1->running());
}

// A net-conf that is a FIFO, then 20,000 levels deep: each a clear error,
// counted and read again every second, until a good one comes.
TEST_F(FileInput, FifoOrDeeplyNestedNetConfIsAClearErrorAndRetried) {
  ASSERT_EQ(mkfifo((dir_ + "/config").c_str(), 0644), 0);
  auto d0 = launch_file(0);
  EXPECT_TRUE(d0->wait_for_log("/config is a FIFO, not a regular file; retrying every second", 5000))
      << d0->log();
  EXPECT_EQ(get(0, "/healthz").rfind("HTTP/1.0 200", 0), 0u);
  EXPECT_GE(input_errors(get(0, "/metrics"), "config"), 1);

  std::filesystem::remove(dir_ + "/config");
  std::ofstream(dir_ + "/config.tmp") << kDeepNetConf;
  std::filesystem::rename(dir_ + "/config.tmp", dir_ + "/config");
  EXPECT_TRUE(d0->wait_for_log("net-conf nests arrays and objects more than 32 deep", 5000))
      << d0->log();
  EXPECT_TRUE(d0->running());
  const long long rejected = input_errors(get(0, "/metrics"), "config");
  EXPECT_GE(rejected, 2);

  std::filesystem::copy_file(cluster_->net_conf, dir_ + "/config.tmp");
  std::filesystem::rename(dir_ + "/config.tmp", dir_ + "/config");
  ASSERT_TRUE(d0->wait_for_log("udpringd ready", 5000)) << d0->log();
  EXPECT_GE(input_errors(get(0, "/metrics"), "config"), rejected);
  EXPECT_EQ(d0->stop(), 0);
}

}  // namespace
// iptables-restore --wait=10 may queue behind kube-proxy for the xtables
// lock, and an iptables-save of a busy node takes seconds: a SIGTERM while
// start-up waits for one kills the child and stops the daemon at once. An
// iptables-save that never answers stands in for both (first in PATH, as
// the daemon looks there first); the forward rules are on by default.
TEST_F(FileInput, SigtermWhileIptablesHangsAtStartUpStopsAtOnce) {
  std::filesystem::copy_file(cluster_->net_conf, dir_ + "/config");
  const std::string bin = cluster_->dir + "/slow-iptables";
  std::filesystem::create_directories(bin);
  const std::string started = bin + "/started";
  {
    std::ofstream save(bin + "/iptables-save");
    save << "#!/bin/sh\necho $$ > " << started << "\nexec sleep 60\n";
  }
  std::filesystem::permissions(bin + "/iptables-save", std::filesystem::perms::owner_all);
  const char* path = std::getenv("PATH");
  auto d = std::make_unique<Process>(
      cluster_->node(1).name(),
      std::vector<std::string>{"env", "PATH=" + bin + ":" + (path ? path : "/usr/bin:/bin"), UDPRINGD_PATH,
                               "--iface=u0", "--workers=1", "--subnet-file=" + env_path(1),
                               "--subnet-mgr=file", "--lease-dir=" + dir_},
      cluster_->dir + "/udpringd-slow-iptables.log");
  pid_t child = 0;
  for (int i = 0; i < 100 && child == 0; ++i) {
    std::ifstream in(started);
    if (!(in >> child)) child = 0;
    if (child == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GT(child, 0) << "the daemon never ran iptables-save\n" << d->log();
  const auto t0 = Clock::now();
  EXPECT_EQ(d->stop(4000), 0) << d->log();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000)) << d->log();
  EXPECT_NE(d->log().find("stopped while installing iptables rules"), std::string::npos) << d->log();
  EXPECT_NE(kill(child, 0), 0) << "iptables-save outlived the daemon";
  kill(child, SIGKILL);  // if it did
  EXPECT_FALSE(std::filesystem::exists(env_path(1))) << "subnet.env written for a node never set up";
}

}  // namespace udpring::test
