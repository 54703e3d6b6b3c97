// A flood of datagrams no daemon may forward, at 50,000 a second for 20 s,
// sent to node 1's daemon while a TCP transfer runs through it: every kind
// of garbage (tests/support/garbage_flood.h) is counted as its own drop, none
// of it reaches the pod it aims at, the transfer's bytes all verify and the
// daemon's memory does not grow.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "tests/support/garbage_flood.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

namespace udpring::test {
namespace {

long long drops(const std::string& m, const std::string& reason) {
  return metric(m, "udpring_drops_total{reason=\"" + reason + "\"}");
}

TEST(GarbageFlood, FiftyThousandDatagramsASecondLoseNoTcpByteAndGrowNoMemory) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  // A stranger on the underlay: an address of node 2's that is no peer.
  sh_ok("ip -n " + topo.n2.name() + " addr add 192.168.77.200/24 dev u0");
  auto d2 = start_udpringd(topo, 2, {"--workers=2"});
  auto d1 = start_udpringd(topo, 1, {"--workers=2", "--healthz-ip=127.0.0.1", "--healthz-port=9133"});
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();

  GarbageFloodPlan plan;
  plan.ns = topo.n2.name();
  plan.peer_ip = "192.168.77.2";
  plan.stranger_ip = "192.168.77.200";
  plan.dst_ip = "192.168.77.1";
  plan.victim_ip = "10.50.1.2";
  plan.victim_node_subnet_ip = "10.50.1.77";
  plan.relay_ip = "192.168.77.1";
  // Warm-up: every buffer and socket queue used once, so that what is
  // measured next is growth, not first use (the buffers' pages come in as
  // packets land on them).
  plan.seconds = 2;
  garbage_flood(plan);
  tcp_each_way_in_turn(topo.p1.name(), "10.50.1.2", topo.p2.name(), "10.50.2.2", 2, 5290, 32ull << 20);
  const long rss_before = rss_kib(d1->pid());
  const std::string m0 = http_get(topo.n1.name(), 9133, "/metrics");
  const long long kernel0 = udp_rcvbuf_errors(topo.n1);
  // What the link between the nodes drops, at either end (the flood goes
  // from node 2's u0 to node 1's).
  const auto link_drops = [&] {
    const long long rx = link_dropped(topo.n1, "u0", "rx_dropped");
    const long long tx = link_dropped(topo.n2, "u0", "tx_dropped");
    return rx < 0 || tx < 0 ? -1 : rx + tx;
  };
  const long long link0 = link_drops();
  ASSERT_GE(kernel0, 0) << "no Udp RcvbufErrors in " << topo.n1.name();
  ASSERT_GE(link0, 0) << "no rx_dropped or tx_dropped for the u0 veth in " << topo.prefix;

  // Transfers of 64 MiB from pod 2 to pod 1 (into node 1 over the flooded
  // port) one after another until the flood ends.
  std::atomic<bool> flood_over{false};
  uint64_t moved = 0;
  int transfers = 0;
  std::string error;
  std::thread tcp([&] {
    try {
      for (uint16_t port = 5301; !flood_over; ++port) {
        moved += tcp_transfer_verified(topo.p1.name(), "10.50.1.2", port, topo.p2.name(), 64ull << 20);
        ++transfers;
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  GarbageFloodResult flood;
  plan.seconds = 20;
  plan.rate = 52000;  // paced in rounds: a little over, so the average is over 50,000
  const auto leaked = udp_receive_during(topo.p1.name(), "10.50.1.2", plan.victim_port, [&] {
    flood = garbage_flood(plan);
  });
  flood_over = true;
  tcp.join();
  const long rss_after = rss_kib(d1->pid());
  const std::string m1 = http_get(topo.n1.name(), 9133, "/metrics");
  const long long socket_dropped = udp_rcvbuf_errors(topo.n1) - kernel0;
  const long long link_lost = link_drops() - link0;
  const long long kernel_dropped = socket_dropped + link_lost;

  const double rate = static_cast<double>(flood.sent) / flood.seconds;
  std::printf("flood: %llu datagrams in %.1f s (%.0f/s), %llu failed sends\n",
              static_cast<unsigned long long>(flood.sent), flood.seconds, rate,
              static_cast<unsigned long long>(flood.send_errors));
  for (int k = 0; k < 9; ++k) {
    std::printf("  %-28s %llu\n", GarbageFloodResult::kind_name(k),
                static_cast<unsigned long long>(flood.by_kind[k]));
  }
  const char* const reasons[] = {"bad_header_udp", "unknown_peer", "truncated", "inner_src_not_peer",
                                 "inner_dst_not_local"};
  long long counted = 0;
  for (const char* r : reasons) {
    const long long d = drops(m1, r) - std::max(0LL, drops(m0, r));
    counted += d;
    std::printf("drops %-20s +%lld\n", r, d);
  }
  std::printf("kernel: UdpRcvbufErrors +%lld, u0 veth drops +%lld; TCP: %d transfers, %llu MiB verified; "
              "RSS %ld -> %ld KiB\n",
              socket_dropped, link_lost, transfers, static_cast<unsigned long long>(moved >> 20), rss_before,
              rss_after);

  EXPECT_GE(rate, 50000) << "the flood did not reach its rate: the test tests less than it says";
  EXPECT_EQ(error, "");
  EXPECT_GE(transfers, 2);
  EXPECT_FALSE(leaked.has_value()) << "a flood datagram reached the pod";
  EXPECT_TRUE(d1->running()) << d1->log();
  EXPECT_LT(rss_after - rss_before, 1024) << "RSS grew by " << rss_after - rss_before << " KiB";
  // Each kind is counted as its own drop, and what the daemon received of
  // the flood is all counted (the rest the kernel dropped at the socket, or
  // on the link when node 1's CPU was busy elsewhere).
  const auto kinds = [&](std::initializer_list<int> ks) {
    long long n = 0;
    for (int k : ks) n += static_cast<long long>(flood.by_kind[k]);
    return n;
  };
  EXPECT_GE(drops(m1, "bad_header_udp") - std::max(0LL, drops(m0, "bad_header_udp")),
            kinds({0, 1, 2, 3, 4}) / 2) << m1;
  EXPECT_GE(drops(m1, "inner_src_not_peer") - std::max(0LL, drops(m0, "inner_src_not_peer")),
            kinds({7}) / 2) << m1;
  EXPECT_GE(drops(m1, "inner_dst_not_local") - std::max(0LL, drops(m0, "inner_dst_not_local")),
            kinds({8}) / 2) << m1;
  EXPECT_GE(drops(m1, "unknown_peer") - std::max(0LL, drops(m0, "unknown_peer")), kinds({5, 6}) / 2) << m1;
  EXPECT_GE(counted + kernel_dropped, static_cast<long long>(flood.sent) * 99 / 100);
  // And it still serves.
  EXPECT_EQ(http_get(topo.n1.name(), 9133, "/readyz").rfind("HTTP/1.0 200", 0), 0u);
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

}  // namespace
}  // namespace udpring::test
