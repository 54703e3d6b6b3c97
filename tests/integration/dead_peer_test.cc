// A peer whose daemon is gone, among three nodes on the file store: node 2's
// udpringd stops, its lease stays (as after a crash), and node 0 keeps
// sending to it. The ICMP port unreachable node 2's kernel answers with is
// counted per peer on node 0 and logged once with what it means, the
// workers never see it, and node 0's traffic to node 1 goes on, verified.
// When node 2's daemon is back, so is its traffic. Without CAP_NET_RAW
// there is no count, and the daemon says so.

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "tests/support/cluster.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"
#include "tests/support/count_of.h"

namespace udpring::test {
namespace {

TEST(DeadPeer, ItsPortUnreachableIsCountedPerPeerAndTheOthersTrafficGoesOn) {
  UDPRING_REQUIRE_INTEGRATION();
  Cluster cluster(3);
  std::vector<std::unique_ptr<Process>> d;
  for (int i = 0; i < 3; ++i) {
    d.push_back(cluster.start_on_file_store(
        i, i == 0 ? std::vector<std::string>{"--workers=2", "--healthz-ip=127.0.0.1", "--healthz-port=9134"}
                  : std::vector<std::string>{"--workers=1"}));
  }
  ASSERT_FALSE(HasFailure());
  std::vector<std::string> pod;
  for (int i = 0; i < 3; ++i) pod.push_back(cluster.add_pod(i, cluster.subnet_env(i)));
  ASSERT_TRUE(Cluster::reachable_within(cluster.pod(0), pod[1], 3000));
  ASSERT_TRUE(Cluster::reachable_within(cluster.pod(0), pod[2], 3000));
  const std::string dead = Cluster::node_ip(2), alive = Cluster::node_ip(1);
  const std::string sample = "udpring_peer_unreachable_total{peer=\"" + dead + "\",reason=\"port_unreachable\"}";
  const std::string m0 = http_get(cluster.node(0).name(), 9134, "/metrics");
  EXPECT_NE(m0.find("# TYPE udpring_peer_unreachable_total counter"), std::string::npos) << m0;
  EXPECT_EQ(metric(m0, sample), -1) << m0;

  ASSERT_EQ(d[2]->stop(), 0);
  // Node 0 goes on sending to node 2 (its lease is still there): pings that
  // find no one, while a transfer to node 1 runs beside them.
  uint64_t moved = 0;
  std::string error;
  std::thread tcp([&] {
    try {
      moved = tcp_transfer_verified(cluster.pod(1).name(), pod[1], 5201, cluster.pod(0).name(), 256ull << 20);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  const std::string ping_out =
      sh_out(cluster.pod(0).exec() + "ping -q -c 20 -i 0.2 -W 1 " + pod[2] + " 2>&1");
  tcp.join();
  EXPECT_NE(ping_out.find(" 0 received"), std::string::npos) << ping_out;
  EXPECT_EQ(moved, 256ull << 20) << error;

  // The control thread reads the ICMP socket at least every 250 ms.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::string m1 = http_get(cluster.node(0).name(), 9134, "/metrics");
  const long long unreachable = metric(m1, sample);
  std::printf("port unreachable from the dead peer: %lld for 20 pings\n", unreachable);
  // The peer's kernel rate-limits its ICMP errors (net.ipv4.icmp_ratelimit,
  // 1 s per destination with a burst of 6): a handful, not 20.
  EXPECT_GE(unreachable, 3) << m1 << d[0]->log();
  EXPECT_EQ(m1.find("udpring_peer_unreachable_total{peer=\"" + alive + "\""), std::string::npos) << m1;
  const std::string log = d[0]->log();
  const size_t line = log.find("peer " + dead + ": ICMP");
  if (line != std::string::npos) std::printf("%s\n", log.substr(line, log.find('\n', line) - line).c_str());
  EXPECT_EQ(count_of(log, "peer " + dead + ": ICMP port_unreachable"), 1u) << log;
  EXPECT_NE(log.find("udpringd or flanneld is not running on that node"), std::string::npos) << log;
  // No worker saw it: no error completion, none stopped, still ready.
  EXPECT_EQ(m1.find("ECONNREFUSED"), std::string::npos) << m1;
  EXPECT_TRUE(d[0]->running());
  EXPECT_EQ(http_get(cluster.node(0).name(), 9134, "/readyz").rfind("HTTP/1.0 200", 0), 0u);

  d[2] = cluster.start_on_file_store(2, {"--workers=1"});
  EXPECT_TRUE(Cluster::reachable_within(cluster.pod(0), pod[2], 3000)) << d[2]->log();
  EXPECT_TRUE(Cluster::ping(cluster.pod(0), pod[1]));
  for (auto& p : d) EXPECT_EQ(p->stop(), 0);
}

// Without CAP_NET_RAW the raw socket cannot be had: the daemon says what it
// will not count and how to get it, and forwards as ever.
TEST(DeadPeer, WithoutNetRawTheCountIsMissingNamedAndForwardingWorks) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--healthz-ip=127.0.0.1", "--healthz-port=9135"},
                           {"setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"});
  EXPECT_NE(d1->log().find("raw ICMP socket: Operation not permitted: ICMP errors about our datagrams are not read"),
            std::string::npos) << d1->log();
  EXPECT_NE(d1->log().find("fragmentation needed is not passed on to the pods; give udpringd "
                           "CAP_NET_RAW for both"),
            std::string::npos)
      << d1->log();
  EXPECT_TRUE(Cluster::ping(topo.p1, "10.50.2.2")) << d1->log();
  const std::string m = http_get(topo.n1.name(), 9135, "/metrics");
  EXPECT_NE(m.find("udpring_routes 1"), std::string::npos) << m;
  EXPECT_EQ(m.find("udpring_peer_unreachable_total"), std::string::npos) << m;
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

}  // namespace
}  // namespace udpring::test
