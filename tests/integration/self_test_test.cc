// The start-up offload self-tests, run inside namespaces made for the test.

#include "io/self_test.h"

#include <arpa/inet.h>

#include <gtest/gtest.h>

#include "io/tun_device.h"
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

// The GSO write self-test against a real vnet-header TUN: accepted when the
// link is up, reported as failed (not crashed, not hung) when it is down.
TEST(SelfTest, TunGsoWrite) {
  UDPRING_REQUIRE_INTEGRATION();
  Netns ns("urst" + std::to_string(getpid() % 100000) + "t");
  run_in_netns(ns.name(), [&] {
    core::UniqueFd tun = io::open_tun_queue("urtest0", true);
    const io::TunOffload off = io::enable_tun_offload(tun.get(), true);
    ASSERT_TRUE(off.ok) << off.error;
    const uint32_t addr = htonl(0x0a320100);  // 10.50.1.0
    const io::SelfTest down = io::self_test_tun_gso_write(tun.get(), addr, false);
    EXPECT_EQ(down.result, io::SelfTestResult::kFailed) << "a down TUN took the write";
    sh_ok("ip -n " + ns.name() + " link set urtest0 up");
    const io::SelfTest tcp = io::self_test_tun_gso_write(tun.get(), addr, false);
    EXPECT_EQ(tcp.result, io::SelfTestResult::kPassed) << tcp.detail;
    if (off.uso) {
      const io::SelfTest udp = io::self_test_tun_gso_write(tun.get(), addr, true);
      EXPECT_EQ(udp.result, io::SelfTestResult::kPassed) << udp.detail;
    }
  });
}

}  // namespace
}  // namespace udpring::test
