// --keep-tun in the two-node topology (tests/support/netns.h): a restart
// leaves the persistent TUN with its address and route, the next udpringd
// reattaches it, and what a pod sends meanwhile is dropped in the TUN rather
// than routed elsewhere; a kept device that no longer fits is made anew; a
// device held by another process or of another kind is refused by name.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/netns.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

namespace udpring::test {
namespace {

using Clock = std::chrono::steady_clock;

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

bool tun_exists(const Topology& topo) {
  return sh("ip -n " + topo.n1.name() + " link show flannel0 >/dev/null 2>&1") == 0;
}

struct PingCount {
  int sent = 0;
  int received = 0;
};

// Pings every 10 ms from p1 to p2's pod, `count` of them, in the background.
class PingLoop {
 public:
  PingLoop(Topology& topo, int count)
      : p_(topo.p1.name(), {"ping", "-n", "-i", "0.01", "-W", "1", "-c", std::to_string(count),
                            "10.50.2.2"},
           topo.dir + "/ping-loop.log") {}
  PingCount finish() {
    (void)p_.wait_exit(30000);
    std::smatch m;
    const std::string out = p_.log();
    PingCount c;
    if (std::regex_search(out, m, std::regex(R"((\d+) packets transmitted, (\d+) received)"))) {
      c.sent = std::stoi(m[1]);
      c.received = std::stoi(m[2]);
    }
    return c;
  }

 private:
  Process p_;
};

struct RestartResult {
  int restart_ms = 0;  // SIGTERM sent to "ready" logged by the next daemon
  PingCount pings;
  uint64_t tcp_bytes = 0;
  std::string error;  // the TCP transfer's, if it failed
};

// 400 pings (4 s) and a 256 MiB verified TCP transfer from p1 to p2, with
// node 1's daemon restarted 1 s in.
RestartResult restart_under_traffic(Topology& topo, std::unique_ptr<Process>& d1,
                                    const std::vector<std::string>& flags, uint64_t bytes) {
  RestartResult r;
  PingLoop pings(topo, 400);
  std::thread tcp([&] {
    try {
      r.tcp_bytes = tcp_transfer_verified(topo.p2.name(), "10.50.2.2", 5201, topo.p1.name(), bytes);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto t0 = Clock::now();
  EXPECT_EQ(d1->stop(), 0) << d1->log();
  d1 = start_udpringd(topo, 1, flags);
  r.restart_ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
  tcp.join();
  r.pings = pings.finish();
  return r;
}

void report(const char* what, const RestartResult& r) {
  std::printf("%s: restart %d ms, %d of %d pings (10 ms apart) lost, %llu TCP bytes verified%s%s\n",
              what, r.restart_ms, r.pings.sent - r.pings.received, r.pings.sent,
              static_cast<unsigned long long>(r.tcp_bytes), r.error.empty() ? "" : ", ",
              r.error.c_str());
}

TEST(KeepTun, RestartKeepsTheDeviceAndLosesOnlyTheGapNoTcpByte) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::vector<std::string> flags = {"--keep-tun", "--workers=2"};
  auto d2 = start_udpringd(topo, 2, flags);
  auto d1 = start_udpringd(topo, 1, flags);
  EXPECT_TRUE(has(d1->log(), "TUN flannel0 is persistent (--keep-tun)")) << d1->log();
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();

  constexpr uint64_t kBytes = 256ull << 20;
  const RestartResult kept = restart_under_traffic(topo, d1, flags, kBytes);
  report("--keep-tun", kept);
  EXPECT_TRUE(has(d1->log(), "TUN flannel0 kept by an earlier run (address 10.50.1.0/32, MTU "
                             "1472, route 10.50.0.0/16): reattaching its queues"))
      << d1->log();
  EXPECT_EQ(kept.tcp_bytes, kBytes) << kept.error;
  EXPECT_EQ(kept.pings.sent, 400);
  // Only what was sent while no daemon read the TUN is lost: at most the
  // restart's length in pings, plus the one or two in flight.
  const int lost = kept.pings.sent - kept.pings.received;
  EXPECT_LE(lost, kept.restart_ms / 10 + 3) << "restart took " << kept.restart_ms << " ms";
  EXPECT_LT(kept.restart_ms, 2000);

  // The same restart without --keep-tun: the device, and with it the
  // route, goes for a while; measured for comparison (docs/reliability.md).
  d1->stop();
  auto plain = start_udpringd(topo, 1, {"--workers=2"});
  EXPECT_TRUE(has(plain->log(), "is no longer persistent (no --keep-tun)")) << plain->log();
  const RestartResult gone = restart_under_traffic(topo, plain, {"--workers=2"}, kBytes);
  report("without --keep-tun", gone);
  EXPECT_EQ(gone.tcp_bytes, kBytes) << gone.error;
  EXPECT_FALSE(has(plain->log(), "kept by an earlier run")) << plain->log();
  EXPECT_EQ(plain->stop(), 0);
  EXPECT_FALSE(tun_exists(topo)) << "a device that is not kept goes with its daemon";
  EXPECT_EQ(d2->stop(), 0);
}

// Between two daemons the device waits with its address and route; a kept
// device whose address or MTU no longer fits is deleted and made anew.
TEST(KeepTun, StoppedDaemonLeavesTheRouteAndAChangedDeviceIsMadeAnew) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::string n1 = "ip -n " + topo.n1.name() + " ";
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  auto d1 = start_udpringd(topo, 1, {"--keep-tun", "--workers=1"});
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_TRUE(has(d1->log(), "leaving TUN flannel0 in place (--keep-tun)")) << d1->log();
  ASSERT_TRUE(tun_exists(topo));
  EXPECT_TRUE(has(sh_out(n1 + "-o addr show dev flannel0"), "inet 10.50.1.0/32"));
  EXPECT_TRUE(has(sh_out(n1 + "route show dev flannel0"), "10.50.0.0/16"));
  // Nobody reads it: a pod's packet to the overlay is dropped there, not
  // sent out of the node's other routes, and the pod is told nothing.
  EXPECT_FALSE(ping(topo.p1, "10.50.2.2", 1));
  EXPECT_TRUE(has(sh_out(n1 + "route get 10.50.2.2"), "dev flannel0"));

  // A stray address on the kept device: made anew, with ours alone.
  sh_ok(n1 + "addr add 10.50.1.77/32 dev flannel0");
  d1 = start_udpringd(topo, 1, {"--keep-tun", "--workers=1"});
  EXPECT_TRUE(has(d1->log(), "TUN flannel0 left by an earlier run has address(es) 10.50.1.0/32, "
                             "10.50.1.77/32 where this lease needs 10.50.1.0/32: deleting it "
                             "and making it anew"))
      << d1->log();
  const std::string addrs = sh_out(n1 + "-o -4 addr show dev flannel0");
  EXPECT_TRUE(has(addrs, "10.50.1.0/32")) << addrs;
  EXPECT_FALSE(has(addrs, "10.50.1.77")) << addrs;
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  EXPECT_EQ(d1->stop(), 0);

  // A smaller underlay MTU: the TUN's must follow.
  sh_ok(n1 + "link set u0 mtu 1400");
  d1 = start_udpringd(topo, 1, {"--keep-tun", "--workers=1"});
  EXPECT_TRUE(has(d1->log(), "has MTU 1472 where this run needs 1372: deleting it")) << d1->log();
  EXPECT_TRUE(has(sh_out(n1 + "link show flannel0"), "mtu 1372"));
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  EXPECT_EQ(d1->stop(), 0);

  // Without --keep-tun the kept device is taken back and goes at the end.
  d1 = start_udpringd(topo, 1, {"--workers=1"});
  EXPECT_TRUE(has(d1->log(), "kept by an earlier run")) << d1->log();
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_FALSE(tun_exists(topo));
  EXPECT_EQ(d2->stop(), 0);
}

// A second daemon on the node, or a device of the name that is no TUN:
// each refused with what to do, and the running daemon keeps its queues.
TEST(KeepTun, ADeviceHeldByAnotherProcessOrOfAnotherKindIsRefused) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--keep-tun", "--workers=1"});
  const std::vector<std::string> second = {
      UDPRINGD_PATH, "--subnet-mgr=static", "--net-config-path=" + topo.net_conf,
      "--static-subnet=10.50.1.0/24", "--iface=u0", "--keep-tun", "--subnet-file=",
      "--healthz-port=0"};  // port 0: no health server
  Process other(topo.n1.name(), second, topo.dir + "/second.log");
  const auto code = other.wait_exit(5000);
  ASSERT_TRUE(code.has_value()) << other.log();
  EXPECT_EQ(*code, 1) << other.log();
  EXPECT_TRUE(has(other.log(), "TUN flannel0 is in use: 1 queue(s) still open in another process "
                               "after 2 s; is another udpringd or flanneld running on this node?"))
      << other.log();
  EXPECT_TRUE(d1->running());
  EXPECT_EQ(d1->stop(), 0);

  sh_ok("ip -n " + topo.n1.name() + " link del flannel0");
  for (const auto& [make, kind] :
       {std::pair{"link add flannel0 type veth peer name fl0peer", "kind \"veth\""},
        std::pair{"tuntap add dev flannel0 mode tap multi_queue", "a TAP"}}) {
    sh_ok("ip -n " + topo.n1.name() + " " + make);
    Process wrong(topo.n1.name(), second, topo.dir + "/wrong-kind.log");
    const auto wrong_code = wrong.wait_exit(5000);
    ASSERT_TRUE(wrong_code.has_value()) << wrong.log();
    EXPECT_EQ(*wrong_code, 1);
    EXPECT_TRUE(has(wrong.log(), std::string("flannel0 exists and is not a TUN device (") + kind +
                                     "): delete it (ip link del flannel0) or give udpringd "
                                     "another --tun-name"))
        << wrong.log();
    sh_ok("ip -n " + topo.n1.name() + " link del flannel0");
  }
}

}  // namespace
}  // namespace udpring::test
