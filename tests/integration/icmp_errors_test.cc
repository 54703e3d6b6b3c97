// ICMP errors udpringd generates, seen from a pod as its tools see them, in
// the two-node topology (tests/support/netns.h): traceroute across the
// overlay shows both daemons' hops (Time Exceeded from each flannel0
// address, one on each path), --icmp-time-exceeded=false restores the
// original's silence, and a flood of expiring packets gets answers only at
// the --icmp-rate / --icmp-burst of its source, the rest counted.

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

namespace udpring::test {
namespace {

// traceroute -n, one probe per hop: the hop's address, or "*".
std::string hops_to(const Netns& from, const std::string& to) {
  return sh_out(from.exec() + "traceroute -n -q 1 -w 1 -m 6 " + to + " 2>&1");
}

// The address traceroute printed for hop `n` ("*" for no answer), "" if
// it printed no such line.
std::string hop(const std::string& trace, int n) {
  std::istringstream lines(trace);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    int index = 0;
    std::string addr;
    if (words >> index >> addr && index == n) return addr;
  }
  return "";
}

TEST(IcmpErrors, TracerouteShowsBothOverlayHops) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1"});
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2", 2));
  // Hop 1 is node 1's kernel (the pod's gateway); hop 2 node 1's daemon,
  // where the TTL runs out on the way out (answered into its TUN); hop 3
  // node 2's daemon, where it runs out on the way in (answered with a
  // datagram back); hop 4 node 2's kernel, from its flannel0 address too.
  const std::string trace = hops_to(topo.p1, "10.50.2.2");
  EXPECT_EQ(hop(trace, 2), "10.50.1.0") << trace;
  EXPECT_EQ(hop(trace, 3), "10.50.2.0") << trace;
  EXPECT_EQ(hop(trace, 5), "10.50.2.2") << trace;
  // And the other way.
  const std::string back = hops_to(topo.p2, "10.50.1.2");
  EXPECT_EQ(hop(back, 2), "10.50.2.0") << back;
  EXPECT_EQ(hop(back, 3), "10.50.1.0") << back;
  EXPECT_EQ(hop(back, 5), "10.50.1.2") << back;
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
  EXPECT_NE(d1->log().find("icmp_time_exceeded_sent="), std::string::npos);
}

TEST(IcmpErrors, TimeExceededOffIsTheOriginalsSilence) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--icmp-time-exceeded=false"});
  auto d2 = start_udpringd(topo, 2, {"--workers=1", "--icmp-time-exceeded=false"});
  const std::string trace = hops_to(topo.p1, "10.50.2.2");
  EXPECT_EQ(hop(trace, 2), "*") << trace;
  EXPECT_EQ(hop(trace, 3), "*") << trace;
  EXPECT_EQ(hop(trace, 5), "10.50.2.2") << trace;
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// 100 pings in 1 s whose TTL runs out at node 1's daemon: 5 answers at once
// (the burst), then 2 per second, so 5 to 8 answers; the rest are counted.
TEST(IcmpErrors, AFloodOfExpiringPacketsIsAnsweredAtTheRate) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--icmp-rate=2", "--icmp-burst=5",
                                     "--healthz-ip=127.0.0.1", "--healthz-port=9131"});
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  const std::string out = sh_out(topo.p1.exec() + "ping -n -c 100 -i 0.01 -t 2 -W 1 10.50.2.2 2>&1");
  size_t answers = 0;
  for (size_t at = out.find("Time to live exceeded"); at != std::string::npos;
       at = out.find("Time to live exceeded", at + 1)) {
    ++answers;
  }
  EXPECT_GE(answers, 5u) << out;
  EXPECT_LE(answers, 8u) << out;
  const std::string m = http_get(topo.n1.name(), 9131, "/metrics");
  EXPECT_EQ(metric(m, "udpring_icmp_time_exceeded_sent_total"), static_cast<long long>(answers)) << m;
  EXPECT_EQ(metric(m, "udpring_icmp_rate_limited_total") + static_cast<long long>(answers),
            metric(m, "udpring_drops_total{reason=\"ttl_expired\"}"))
      << m;
  EXPECT_GE(metric(m, "udpring_icmp_rate_limited_total"), 90) << m;
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

}  // namespace
}  // namespace udpring::test
