#include "core/net_config.h"

#include <gtest/gtest.h>

namespace udpring {
namespace {

using core::ConfigError;
using core::parse_net_config;

TEST(NetConfig, Defaults) {
  const auto c = parse_net_config(R"({"Network":"10.5.0.0/16"})");
  EXPECT_EQ(core::format_prefix(c.network), "10.5.0.0/16");
  EXPECT_EQ(c.subnet_len, 24);
  EXPECT_EQ(core::format_ipv4(c.subnet_min), "10.5.1.0");  // first subnet skipped
  EXPECT_EQ(core::format_ipv4(c.subnet_max), "10.5.255.0");
  EXPECT_EQ(c.backend_type, "udp");  // absent Backend means udp
  EXPECT_EQ(c.port, 8285);
}

TEST(NetConfig, CaseInsensitiveKeysAndUnknownIgnored) {
  const auto c = parse_net_config(
      R"({"network":"10.0.0.0/8","subnetlen":20,"SUBNETMIN":"10.10.0.0","subnetMax":"10.99.0.0",
          "backend":{"type":"UDP","port":7890},"SomethingElse":[1,2]})");
  EXPECT_EQ(c.subnet_len, 20);
  EXPECT_EQ(core::format_ipv4(c.subnet_min), "10.10.0.0");
  EXPECT_EQ(core::format_ipv4(c.subnet_max), "10.99.0.0");
  EXPECT_EQ(c.port, 7890);
}

TEST(NetConfig, SmallNetworkSubnetLen) {
  EXPECT_EQ(parse_net_config(R"({"Network":"10.5.0.0/22"})").subnet_len, 24);
  EXPECT_EQ(parse_net_config(R"({"Network":"10.5.0.0/23"})").subnet_len, 25);
  EXPECT_EQ(parse_net_config(R"({"Network":"10.5.0.0/28"})").subnet_len, 30);
}

// Checked before parsing: nlohmann's dump() (which error messages use)
// recurses once per level.
TEST(NetConfig, DeepOrHugeTextIsAConfigErrorNotACrash) {
  const std::string deep = R"({"Network":"10.5.0.0/16","x":)" + std::string(20000, '[') +
                           std::string(20000, ']') + "}";
  try {
    parse_net_config(deep);
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 32 deep"), std::string::npos) << e.what();
  }
  const std::string huge = R"({"Network":"10.5.0.0/16","x":")" + std::string(70000, 'a') + "\"}";
  try {
    parse_net_config(huge);
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 65536"), std::string::npos) << e.what();
  }
  // Deep inside an ignored key, but within the limit: accepted.
  EXPECT_EQ(parse_net_config(R"({"Network":"10.5.0.0/16","x":[[[[1]]]]})").subnet_len, 24);
}

// Found by tests/fuzz/net_config_fuzz.cc (corpus/net_config/crash-8c58c18a...):
// nlohmann throws out_of_range, not parse_error, for a number too big for a
// double, and it escaped as an error that names neither the file nor JSON.
TEST(NetConfig, NumberOutOfRangeIsAConfigError) {
  for (const char* text : {R"({"Network":"10.5.0.0/16","SubnetLen":1e400})", "1e400",
                           R"({"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":-1e999}})"}) {
    try {
      parse_net_config(text);
      ADD_FAILURE() << text << ": no error";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
    }
  }
}

TEST(NetConfig, PortZeroMeansDefault) {
  EXPECT_EQ(parse_net_config(R"({"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":0}})").port,
            8285);
}

struct BadCase {
  const char* name;
  const char* json;
  const char* message_part;
};

class NetConfigErrors : public testing::TestWithParam<BadCase> {};

TEST_P(NetConfigErrors, NamesFieldAndValue) {
  try {
    parse_net_config(GetParam().json);
    FAIL() << "accepted " << GetParam().json;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(GetParam().message_part), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    NetConfig, NetConfigErrors,
    testing::Values(
        BadCase{"not_json", "{", "not valid JSON"},
        BadCase{"not_object", "[1]", "JSON object"},
        BadCase{"no_network", "{}", "Network is missing"},
        BadCase{"bad_network", R"({"Network":"10.5.0.0"})", "\"10.5.0.0\" is not an IPv4 CIDR"},
        BadCase{"network_not_string", R"({"Network":5})", "Network must be a string"},
        BadCase{"too_small", R"({"Network":"10.5.0.0/29"})", "too small"},
        BadCase{"subnetlen_31", R"({"Network":"10.5.0.0/16","SubnetLen":31})", "SubnetLen 31"},
        BadCase{"subnetlen_too_close", R"({"Network":"10.5.0.0/16","SubnetLen":17})", "SubnetLen 17"},
        BadCase{"min_outside", R"({"Network":"10.5.0.0/16","SubnetMin":"10.6.0.0"})", "SubnetMin \"10.6.0.0\" is not in Network"},
        BadCase{"min_unaligned", R"({"Network":"10.5.0.0/16","SubnetMin":"10.5.1.1"})", "SubnetMin \"10.5.1.1\" is not on a /24"},
        BadCase{"max_bad", R"({"Network":"10.5.0.0/16","SubnetMax":"x"})", "SubnetMax \"x\""},
        BadCase{"min_above_max", R"({"Network":"10.5.0.0/16","SubnetMin":"10.5.9.0","SubnetMax":"10.5.2.0"})", "above SubnetMax"},
        BadCase{"vxlan", R"({"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}})", "Backend.Type \"vxlan\" is not supported by udpring"},
        BadCase{"no_type", R"({"Network":"10.5.0.0/16","Backend":{"Port":1}})", "Backend.Type is missing"},
        BadCase{"bad_port", R"({"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":70000}})", "Backend.Port 70000"},
        BadCase{"port_string", R"({"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":"80"}})", "Backend.Port must be an integer"},
        BadCase{"ipv6", R"({"Network":"10.5.0.0/16","EnableIPv6":true})", "EnableIPv6"},
        BadCase{"no_ipv4", R"({"Network":"10.5.0.0/16","EnableIPv4":false})", "EnableIPv4"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace udpring
