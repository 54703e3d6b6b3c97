#include "core/subnet_env.h"

#include <gtest/gtest.h>

namespace udpring {
namespace {

TEST(SubnetEnv, GoldenBytes) {
  const core::SubnetEnv env{*core::parse_prefix("10.5.0.0/16"), *core::parse_prefix("10.5.34.0/24"),
                            1472, false};
  EXPECT_EQ(core::format_subnet_env(env),
            "FLANNEL_NETWORK=10.5.0.0/16\n"
            "FLANNEL_SUBNET=10.5.34.1/24\n"
            "FLANNEL_MTU=1472\n"
            "FLANNEL_IPMASQ=false\n");
  auto masq = env;
  masq.ip_masq = true;
  EXPECT_NE(core::format_subnet_env(masq).find("FLANNEL_IPMASQ=true\n"), std::string::npos);
}

TEST(SubnetEnv, ReadsBackWhatFlanneldWrote) {
  const auto prev = core::parse_subnet_env(
      "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.34.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n");
  ASSERT_TRUE(prev.network && prev.subnet);
  EXPECT_EQ(core::format_prefix(*prev.network), "10.5.0.0/16");
  EXPECT_EQ(core::format_prefix(*prev.subnet), "10.5.34.0/24");  // host bits masked
}

TEST(SubnetEnv, ToleratesListsCrlfAndJunk) {
  const auto prev = core::parse_subnet_env(
      "# comment\r\nFLANNEL_SUBNET=10.5.7.1/24,10.6.7.1/24\r\nFLANNEL_NETWORK=nonsense\r\nOTHER=1");
  ASSERT_TRUE(prev.subnet);
  EXPECT_EQ(core::format_prefix(*prev.subnet), "10.5.7.0/24");
  EXPECT_FALSE(prev.network);
  EXPECT_FALSE(core::parse_subnet_env("").subnet);
}

}  // namespace
}  // namespace udpring
