// What udpringd's memory costs a node. Node 1's daemon is measured idle
// (after a ping) and at its peak (VmHWM) after TCP both ways through every
// one of its workers: with the default flags, and with 1 and 4 workers (4 is
// what the default gives a node of 4 CPUs or more, up to any size). Its
// start-up log states the plan, and warns when the flags ask for more than
// a DaemonSet's memory limit typically allows.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

namespace udpring::test {
namespace {

constexpr long kMiB = 1024;  // in KiB

struct Footprint {
  long idle_kib = 0;
  long peak_kib = 0;
  std::string log;
};

// 2 x workers connections each way, in turn (tcp_each_way_in_turn), reach
// every worker twice each way; each worker's traffic checked below shows it.
Footprint measure(std::vector<std::string> flags, int workers, uint16_t health_port) {
  Topology topo;
  auto d2 = start_udpringd(topo, 2, flags);
  flags.push_back("--healthz-ip=127.0.0.1");
  flags.push_back("--healthz-port=" + std::to_string(health_port));
  auto d1 = start_udpringd(topo, 1, flags);
  Footprint f;
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  f.idle_kib = rss_kib(d1->pid());

  const int connections = 2 * workers;
  EXPECT_EQ(tcp_each_way_in_turn(topo.p1.name(), "10.50.1.2", topo.p2.name(), "10.50.2.2", connections, 5400,
                                 32ull << 20),
            2ull * connections * (32ull << 20));
  const std::string m = http_get(topo.n1.name(), health_port, "/metrics");
  for (int w = 0; w < workers; ++w) {
    // A 32 MiB transfer is hundreds of 64 KiB reads and receives: enough to
    // go round a worker's 64-buffer rings, so its peak is in the figure.
    EXPECT_GT(worker_metric(m, "udpring_worker_tun_rx_packets_total", w), 1000) << "worker " << w << "\n" << m;
    EXPECT_GT(worker_metric(m, "udpring_worker_udp_rx_packets_total", w), 1000) << "worker " << w << "\n" << m;
  }
  f.peak_kib = peak_rss_kib(d1->pid());
  f.log = d1->log();
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
  std::printf("%d worker(s): RSS idle %ld KiB, peak %ld KiB\n", workers, f.idle_kib, f.peak_kib);
  return f;
}

TEST(Footprint, DefaultFlagsStayUnder64MiBUnderLoad) {
  UDPRING_REQUIRE_INTEGRATION();
  const int workers = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  const Footprint f = measure({}, workers, 9141);
  EXPECT_GT(f.idle_kib, 0);
  EXPECT_LE(f.peak_kib, 64 * kMiB);
  EXPECT_NE(f.log.find("memory: up to "), std::string::npos) << f.log;
  EXPECT_EQ(f.log.find("may take up to"), std::string::npos) << "warned at default flags:\n" << f.log;
}

// The per-worker price, and the total a node with 4 or more CPUs pays by
// default (the default stops at 4 workers, so this holds for 64 cores).
TEST(Footprint, EachWorkerBeyondTheFirstCostsAtMost16MiB) {
  UDPRING_REQUIRE_INTEGRATION();
  const Footprint one = measure({"--workers=1"}, 1, 9142);
  const Footprint four = measure({"--workers=4"}, 4, 9143);
  const long per_worker = (four.peak_kib - one.peak_kib) / 3;
  std::printf("each worker beyond the first: %ld KiB at peak\n", per_worker);
  EXPECT_GT(per_worker, 0);
  EXPECT_LE(per_worker, 16 * kMiB);
  EXPECT_LE(four.peak_kib, 64 * kMiB);
  // Pages come in as packets land on them: idle, the 4 workers' buffer
  // arenas (8 MiB each) are mostly not resident.
  EXPECT_LT(four.idle_kib, four.peak_kib - 16 * kMiB);
}

TEST(Footprint, FlagsThatNeedMoreThanATypicalLimitAreWarnedOfAtStart) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=8"});
  ASSERT_TRUE(d1->wait_for_log("may take up to", 2000)) << d1->log();
  const std::string log = d1->log();
  EXPECT_NE(log.find("more than 64.0 MiB, about what a DaemonSet's memory limit allows: lower "
                     "--workers (8) or --buffers (64 per TUN ring"),
            std::string::npos)
      << log;
  EXPECT_EQ(d1->stop(), 0);
}

}  // namespace
}  // namespace udpring::test
