// udpringd as a service, in the two-node topology (see tests/support/netns.h):
// restarts, /healthz, /readyz and /metrics, systemd's notification, an
// unimplemented flanneld flag, and setup errors.

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/unique_fd.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

namespace udpring::test {
namespace {

// A restart right after a stop must come up on the same port, although the
// kernel releases the old io_uring's registered socket asynchronously (a
// flags sweep of the benchmark hit EADDRINUSE here).
TEST(DaemonSetup, RestartsAtOnceOnTheSamePort) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  for (const char* workers : {"--workers=1", "--workers=2", "--workers=2", "--workers=1"}) {
    auto d1 = start_udpringd(topo, 1, {workers, "--healthz-ip=127.0.0.1", "--healthz-port=9102"});
    EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << workers << "\n" << d1->log();
    // With 2 workers the reuseport group must be new, not the exiting
    // daemon's: d2 (1 worker) sends from 8285, so (8285 mod 840) mod 2 = 1.
    if (std::string(workers) == "--workers=2") {
      const std::string m = http_get(topo.n1.name(), 9102, "/metrics");
      EXPECT_EQ(worker_metric(m, "udpring_worker_udp_rx_packets_total", 0), 0) << m;
      EXPECT_GE(worker_metric(m, "udpring_worker_udp_rx_packets_total", 1), 2) << m;
    }
    EXPECT_EQ(d1->stop(), 0);
  }
  EXPECT_EQ(d2->stop(), 0);
}

// /readyz and /metrics of a running daemon, scraped inside its namespace.
TEST(Endpoints, ReadyzAndMetricsDuringTraffic) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--healthz-ip=127.0.0.1", "--healthz-port=9101"});
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  EXPECT_EQ(http_get(topo.n1.name(), 9101, "/readyz").rfind("HTTP/1.0 200", 0), 0u);
  EXPECT_EQ(http_get(topo.n1.name(), 9101, "/healthz").rfind("HTTP/1.0 200", 0), 0u);
  const std::string before = http_get(topo.n1.name(), 9101, "/metrics");
  ASSERT_GE(metric(before, "udpring_tun_rx_packets_total"), 0) << before;
  EXPECT_EQ(metric(before, "udpring_routes"), 1);
  EXPECT_NE(before.find("udpring_drops_total{reason=\"no_route\"}"), std::string::npos) << before;
  // What the flags asked for and the kernel granted; one worker needs no
  // steering. USO (6.2+) and READ_MULTISHOT (6.7+) depend on the kernel: the
  // metrics must agree with the features line the workers logged.
  const std::string log = d1->log();
  const std::pair<const char*, bool> asked[] = {
      {"tun_offload", true}, {"tcp_coalesce", true}, {"gso", true}, {"gro", true},
      {"uso", log.find(", USO split") != std::string::npos},
      {"multishot_read", log.find(", TUN READ_MULTISHOT") != std::string::npos}};
  for (const auto& [path, granted] : asked) {
    EXPECT_EQ(metric(before, "udpring_fast_path{path=\"" + std::string(path) + "\"}"), granted ? 1 : 0)
        << path;
    EXPECT_EQ(metric(before, "udpring_fast_path_refused{path=\"" + std::string(path) + "\"}"),
              granted ? 0 : 1)
        << path;
  }
  for (const char* path : {"send_zc", "sqpoll", "tun_steering", "port_steering"}) {
    EXPECT_EQ(metric(before, "udpring_fast_path{path=\"" + std::string(path) + "\"}"), 0) << path;
    EXPECT_EQ(metric(before, "udpring_fast_path_refused{path=\"" + std::string(path) + "\"}"), 0)
        << path;
  }
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2"));
  const std::string after = http_get(topo.n1.name(), 9101, "/metrics");
  EXPECT_GE(metric(after, "udpring_tun_rx_packets_total") - metric(before, "udpring_tun_rx_packets_total"), 3);
  EXPECT_GE(metric(after, "udpring_udp_rx_packets_total") - metric(before, "udpring_udp_rx_packets_total"), 3);
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// READY=1 reaches $NOTIFY_SOCKET once the daemon is ready (systemd Type=notify).
TEST(Endpoints, NotifiesSystemdWhenReady) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::string sock_path = topo.dir + "/notify.sock";
  core::UniqueFd rx(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, sock_path.c_str(), sock_path.size() + 1);
  ASSERT_EQ(bind(rx.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  setenv("NOTIFY_SOCKET", sock_path.c_str(), 1);  // inherited by the child only
  // A flanneld flag udpringd does not implement is accepted and named in a warning.
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--ip-blackhole-route"});
  unsetenv("NOTIFY_SOCKET");
  EXPECT_NE(d1->log().find("--ip-blackhole-route=true: a flanneld flag udpringd does not implement yet"),
            std::string::npos)
      << d1->log();
  pollfd pfd{rx.get(), POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 3000), 1) << "no notification";
  char buf[64] = {};
  ASSERT_GT(recv(rx.get(), buf, sizeof buf - 1, 0), 0);
  EXPECT_STREQ(buf, "READY=1");
  EXPECT_EQ(d1->stop(), 0);
}

// Setup failures are reported with the object named and leave nothing behind.
TEST(DaemonSetup, BadConfigFailsLoudAndCleanly) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::string vxlan_conf = topo.dir + "/vxlan.json";
  sh_ok("echo '{\"Network\":\"10.50.0.0/16\",\"Backend\":{\"Type\":\"vxlan\"}}' > " + vxlan_conf);
  // Each start must exit 1 with a message naming the bad input.
  struct Refusal {
    std::string conf;
    std::vector<std::string> flags;
    std::string message;
  };
  const Refusal refusals[] = {
      {vxlan_conf, {"--iface=u0"}, "Backend.Type \"vxlan\" is not supported"},
      {topo.net_conf, {"--iface=nosuchif0"}, "nosuchif0"},
      {topo.net_conf, {"--iface=u0", "--buffers=32768"}, "--buffers 32768 is too many"},
      {topo.net_conf, {"--iface=u0", "--buffer-size=2048"}, "--buffer-size 2048 is too small"},
      // Static leases pass the checks every store's leases do
      // (core/lease_policy.h); flags cannot change, so a refusal is fatal.
      {topo.net_conf, {"--iface=u0", "--static-peer=10.50.2.7/32=192.168.77.2"},
       "--static-peer 10.50.2.7/32=192.168.77.2 is refused: its prefix length is not the "
       "network's SubnetLen 24"},
      {topo.net_conf, {"--iface=u0", "--static-peer=10.51.2.0/24=192.168.77.2"},
       "is refused: it is not inside Network 10.50.0.0/16"},
      {topo.net_conf, {"--iface=u0", "--static-peer=10.50.2.0/24=127.0.0.1"},
       "is refused: its PublicIP is not a unicast address"},
      {topo.net_conf, {"--iface=u0", "--static-peer=10.50.2.0/24=192.168.77.1"},
       "is refused: its PublicIP is this node's own address"},
      {topo.net_conf,
       {"--iface=u0", "--static-peer=10.50.2.0/24=192.168.77.2", "--static-peer=10.50.2.0/24=192.168.77.3"},
       "--static-peer 10.50.2.0/24=192.168.77.3 is refused: it overlaps an earlier lease "
       "(--static-peer 10.50.2.0/24=192.168.77.2)"},
      {topo.net_conf, {"--iface=u0", "--static-subnet=10.50.1.0/25"},
       "--static-subnet 10.50.1.0/25 is not a /24"},
  };
  int n = 0;
  for (const Refusal& r : refusals) {
    std::vector<std::string> argv = {UDPRINGD_PATH, "--subnet-mgr=static", "--net-config-path=" + r.conf,
                                     "--static-subnet=10.50.1.0/24"};
    argv.insert(argv.end(), r.flags.begin(), r.flags.end());
    Process p(topo.n1.name(), argv, topo.dir + "/bad" + std::to_string(n++) + ".log");
    EXPECT_EQ(p.wait_exit(3000), 1) << r.message;
    EXPECT_NE(p.log().find(r.message), std::string::npos) << p.log();
    // The failed start left no TUN device behind.
    EXPECT_NE(sh("ip -n " + topo.n1.name() + " link show flannel0 >/dev/null 2>&1"), 0) << r.message;
  }
}

// What the kube-flannel DaemonSet's udp backend crash-loops on: no TUN
// device in the container, or no CAP_NET_ADMIN. The daemon must exit 1
// naming the pod-spec field to change, and leave no device behind. Both are
// made real: a mount namespace with an empty /dev/net, and a bounding set
// without net_admin.
TEST(DaemonSetup, MissingTunOrCapabilityNamesThePodSpecField) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::vector<std::string> daemon = {UDPRINGD_PATH, "--subnet-mgr=static",
                                           "--net-config-path=" + topo.net_conf,
                                           "--static-subnet=10.50.1.0/24", "--iface=u0"};
  struct Case {
    std::vector<std::string> wrapper;
    std::string message;
  };
  const Case cases[] = {
      {{"unshare", "--mount", "sh", "-c", "mount -t tmpfs none /dev/net && exec \"$0\" \"$@\""},
       "hostPath volume with path /dev/net/tun and type CharDevice"},
      {{"setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"},
       "add NET_ADMIN to securityContext.capabilities.add"},
  };
  int n = 0;
  for (const Case& c : cases) {
    std::vector<std::string> argv = c.wrapper;
    argv.insert(argv.end(), daemon.begin(), daemon.end());
    Process p(topo.n1.name(), argv, topo.dir + "/perm" + std::to_string(n++) + ".log");
    EXPECT_EQ(p.wait_exit(5000), 1) << p.log();
    EXPECT_NE(p.log().find(c.message), std::string::npos) << p.log();
    EXPECT_NE(sh("ip -n " + topo.n1.name() + " link show flannel0 >/dev/null 2>&1"), 0) << p.log();
  }
  // The same daemon with neither taken away starts.
  auto ok = start_udpringd(topo, 1, {"--workers=1"});
  EXPECT_EQ(ok->stop(), 0);
}

}  // namespace
}  // namespace udpring::test
