// The start-up offload self-tests, run inside namespaces made for the test.

#include "io/self_test.h"

#include <gtest/gtest.h>

#include "tests/support/netns.h"

namespace udpring::test {
namespace {

TEST(SelfTest, UdpGsoPassesOnAWorkingLoopback) {
  UDPRING_REQUIRE_INTEGRATION();
  Netns ns("urst" + std::to_string(getpid() % 100000));  // Netns brings lo up
  io::SelfTest t{};
  run_in_netns(ns.name(), [&] { t = io::self_test_udp_gso(); });
  EXPECT_EQ(t.result, io::SelfTestResult::kPassed) << t.detail;
}

TEST(SelfTest, UdpGsoIsSkippedWithoutLoopback) {
  UDPRING_REQUIRE_INTEGRATION();
  Netns ns("urst" + std::to_string(getpid() % 100000) + "d");
  sh_ok("ip -n " + ns.name() + " link set lo down");
  io::SelfTest t{};
  run_in_netns(ns.name(), [&] { t = io::self_test_udp_gso(); });
  EXPECT_EQ(t.result, io::SelfTestResult::kSkipped) << t.detail;
}

}  // namespace
}  // namespace udpring::test
