// What the kernel objects a worker owns can do to it, made real in the
// two-node topology (tests/support/netns.h): the TUN device deleted under a
// running daemon. A worker must not spin on a device that is gone: the
// daemon logs the device once, turns /readyz to 503 and exits non-zero
// within a second, so that systemd or kubelet restarts it, and the restarted
// daemon carries traffic again.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"
#include "tests/support/count_of.h"

namespace udpring::test {
namespace {

using Clock = std::chrono::steady_clock;

// One worker with multishot reads and offloads, and two with plain reads
// and no offloads: each read path must see the device go.
TEST(KernelFaults, TunDeletedStopsTheDaemonWithinASecondNamingTheDevice) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  const std::vector<std::vector<std::string>> flag_sets = {
      {"--workers=1"}, {"--workers=2", "--no-tun-offload", "--no-multishot"}};
  for (const auto& flags : flag_sets) {
    std::string name;
    for (const auto& f : flags) name += f + " ";
    std::vector<std::string> args = flags;
    args.insert(args.end(), {"--healthz-ip=127.0.0.1", "--healthz-port=9121"});
    auto d1 = start_udpringd(topo, 1, args);
    ASSERT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << name << d1->log();
    ASSERT_EQ(http_get(topo.n1.name(), 9121, "/readyz").rfind("HTTP/1.0 200", 0), 0u) << name;

    // Measured from the end of the deletion: `ip link del` itself waits for
    // RCU grace periods (~0.5 s here) while the daemon is already stopping.
    ASSERT_EQ(sh("ip -n " + topo.n1.name() + " link del flannel0"), 0) << name;
    const auto t0 = Clock::now();
    const auto code = d1->wait_exit(3000);
    const auto took = Clock::now() - t0;
    const std::string log = d1->log();
    ASSERT_TRUE(code.has_value()) << name << "still running 3 s after its TUN went\n" << log;
    EXPECT_EQ(*code, 1) << name << log;
    EXPECT_LT(took, std::chrono::milliseconds(1000)) << name << log;
    // Named once, even when both workers saw it.
    EXPECT_EQ(count_of(log, "TUN device flannel0: tun_read failed with "), 1u) << name << log;
    EXPECT_EQ(count_of(log, "restarts udpringd"), 1u) << name << log;
    EXPECT_NE(log.find("/readyz answers 503"), std::string::npos) << name << log;
    // The error completions are counted (the exit's stats line), and there
    // are a handful, not the millions of a worker re-arming in a loop.
    const size_t at = log.find("error_tun_read_");
    ASSERT_NE(at, std::string::npos) << name << log;
    const size_t eq = log.find('=', at);
    const long errors = std::stol(log.substr(eq + 1));
    EXPECT_GE(errors, 1) << name;
    EXPECT_LE(errors, 16) << name << log;

    // What systemd or kubelet does next: a new daemon, and traffic again.
    auto again = start_udpringd(topo, 1, {"--workers=1"});
    EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << name << again->log();
    EXPECT_EQ(again->stop(), 0) << name;
  }
  EXPECT_EQ(d2->stop(), 0);
}

// The smallest pools and socket buffers, plain reads, and a flood from a
// pod: sends hold every TUN buffer at times, and each read armed then ends
// with ENOBUFS at once. A worker that re-armed every turn regardless spun
// through millions of those; one that waits for a buffer to come back has
// at most about one per buffer handed back, and recovers when the flood ends.
TEST(KernelFaults, ATunPoolHeldBySendsIsWaitedForNotSpunOn) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--no-multishot", "--buffers=16", "--socket-sndbuf=4096",
                                     "--healthz-ip=127.0.0.1", "--healthz-port=9122"});
  // A slow underlay (a token bucket on node 1's link) keeps sent datagrams
  // queued, charged to the socket: its send buffer fills and sends wait.
  ASSERT_EQ(sh("tc -n " + topo.n1.name() + " qdisc add dev u0 root tbf rate 20mbit burst 16kb latency 50ms"), 0);
  udp_burst(topo.p2.name(), "10.50.2.2", 5201, topo.p1.name(), 5000, 1400, 32, 200);
  const std::string m = http_get(topo.n1.name(), 9122, "/metrics");
  const long long starved =
      metric(m, "udpring_completion_errors_total{op=\"tun_read\",errno=\"ENOBUFS\",class=\"transient\"}");
  const long long read = metric(m, "udpring_tun_rx_packets_total");
  std::printf("TUN reads that found no buffer: %lld, packets read: %lld\n", starved, read);
  EXPECT_GE(read, 4000) << m;
  EXPECT_LE(starved, read + 16) << m;
  EXPECT_GT(starved, 0) << "the flood never held every buffer: the test tests nothing\n" << m;
  ASSERT_EQ(sh("tc -n " + topo.n1.name() + " qdisc del dev u0 root"), 0);
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// SIGTERM while both workers move a TCP transfer at full speed: the daemon
// stops within a second with exit 0, and the transfer, held up while no
// daemon runs, completes with every byte once a new one starts.
TEST(KernelFaults, SigtermAtFullLoadExitsWithinASecond) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d2 = start_udpringd(topo, 2, {"--workers=2"});
  auto d1 = start_udpringd(topo, 1, {"--workers=2"});
  constexpr uint64_t kBytes = 1ull << 30;
  uint64_t received = 0;
  std::string error;
  std::thread tcp([&] {
    try {
      received = tcp_transfer_verified(topo.p2.name(), "10.50.2.2", 5201, topo.p1.name(), kBytes);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  const auto before = daemon_stats(*d1);
  const auto t0 = Clock::now();
  const int code = d1->stop(3000);
  const auto took = Clock::now() - t0;
  std::printf("SIGTERM at load: exit %d in %lld ms\n", code,
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  EXPECT_EQ(code, 0) << d1->log();
  EXPECT_LT(took, std::chrono::milliseconds(1000)) << d1->log();
  // It was under load: the transfer had moved tens of thousands of packets.
  EXPECT_GT(before.at("udp_tx_packets"), 10000u);
  d1 = start_udpringd(topo, 1, {"--workers=2"});
  tcp.join();
  EXPECT_EQ(received, kBytes) << error;
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

}  // namespace
}  // namespace udpring::test
