// The start-up offload self-tests, run inside namespaces made for the test.

#include "io/kernel/self_test.h"

#include <arpa/inet.h>

#include <gtest/gtest.h>

#include "io/kernel/tun_device.h"
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

// --print-config runs the same checks as the daemon's start, in a network
// namespace of its own. The caller's namespace here could not pass them:
// its loopback is down (the UDP GSO check would be skipped) and a veth
// holds the probe's TUN name (TUNSETIFF would fail). Without root it says
// the checks did not run.
TEST(SelfTest, PrintConfigRunsTheOffloadChecksInAScratchNamespace) {
  UDPRING_REQUIRE_INTEGRATION();
  Netns ns("urst" + std::to_string(getpid() % 100000) + "p");
  sh_ok("ip -n " + ns.name() + " link set lo down");
  sh_ok("ip -n " + ns.name() + " link add udpring-probe type veth peer name urprobe-peer");
  const std::string links_before = sh_out("ip -n " + ns.name() + " -o link show");
  const std::string out = sh_out(ns.exec() + UDPRINGD_PATH " --print-config");
  for (const char* want : {"UDP GSO self-test (loopback): passed",
                           "TUN offload (IFF_VNET_HDR, TSO4): yes",
                           "TUN TCP GSO write self-test: passed"}) {
    EXPECT_NE(out.find(want), std::string::npos) << want << "\n" << out;
  }
  if (out.find("TUN USO (Linux 6.2+): yes") != std::string::npos) {
    EXPECT_NE(out.find("TUN UDP GSO write self-test: passed"), std::string::npos) << out;
  }
  EXPECT_EQ(sh_out("ip -n " + ns.name() + " -o link show"), links_before);
  const std::string user = sh_out(ns.exec() + "setpriv --reuid=65534 --regid=65534 --clear-groups " +
                                  UDPRINGD_PATH " --print-config");
  EXPECT_NE(user.find("offload probes (TUN offload, UDP GSO): not run: a scratch network namespace "
                      "needs root"),
            std::string::npos)
      << user;
  EXPECT_NE(user.find("workers: "), std::string::npos) << user;
}

}  // namespace
}  // namespace udpring::test
