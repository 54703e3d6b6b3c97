// flanneld's interface flags (--iface, --iface-regex, --iface-can-reach,
// --public-ip) resolved over rtnetlink inside a scratch namespace with two
// interfaces, a default route and a specific route.

#include <gtest/gtest.h>

#include <atomic>
#include <unistd.h>

#include "io/netlink.h"
#include "tests/support/netns.h"

namespace udpring::test {
namespace {

using io::ExternalInterface;
using io::IfaceSelection;

class IfaceSelect : public ::testing::Test {
 protected:
  void SetUp() override {
    UDPRING_REQUIRE_INTEGRATION();
    static std::atomic<int> n{0};
    ns_ = std::make_unique<Netns>("uris" + std::to_string(getpid() % 100000) + "x" +
                                  std::to_string(n++));
    const std::string ip = "ip -n " + ns_->name() + " ";
    // veth pairs (this kernel has no dummy driver); the far ends stay unaddressed.
    sh_ok(ip + "link add ua0 type veth peer name xa0");
    sh_ok(ip + "link add ub0 type veth peer name xb0");
    sh_ok(ip + "link set ua0 mtu 9000 up");
    sh_ok(ip + "link set ub0 up");
    sh_ok(ip + "link set xa0 up");
    sh_ok(ip + "link set xb0 up");
    sh_ok(ip + "addr add 10.201.0.5/24 dev ua0");
    sh_ok(ip + "addr add 10.201.0.6/24 dev ua0");  // a secondary
    sh_ok(ip + "addr add 10.202.0.7/24 dev ub0");
    sh_ok(ip + "route add default via 10.202.0.1 dev ub0");
    sh_ok(ip + "route add 10.203.0.0/16 via 10.201.0.1 dev ua0");
  }

  ExternalInterface find(const IfaceSelection& sel) {
    ExternalInterface out;
    run_in_netns(ns_->name(), [&] { out = io::find_external_interface(sel); });
    return out;
  }
  std::string error_of(const IfaceSelection& sel) {
    try {
      find(sel);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "(no error)";
  }
  static core::Be32 A(const char* s) { return *core::parse_ipv4(s); }
  static IfaceSelection sel(std::vector<std::string> ifaces, std::vector<std::string> regex,
                            std::optional<core::Be32> can_reach, std::optional<core::Be32> public_ip) {
    IfaceSelection s;
    s.ifaces = std::move(ifaces);
    s.iface_regex = std::move(regex);
    s.can_reach = can_reach;
    s.public_ip = public_ip;
    return s;
  }

  std::unique_ptr<Netns> ns_;
};

TEST_F(IfaceSelect, DefaultRouteInterface) {
  const auto e = find(IfaceSelection{});
  EXPECT_EQ(e.name, "ub0");
  EXPECT_EQ(e.addr, A("10.202.0.7"));
}

TEST_F(IfaceSelect, IfaceByNameOrAddressFirstMatchWins) {
  auto e = find(sel({"nosuch0", "ua0"}, {}, std::nullopt, std::nullopt));
  EXPECT_EQ(e.name, "ua0");
  EXPECT_EQ(e.addr, A("10.201.0.5"));  // primary before secondary
  EXPECT_EQ(e.mtu, 9000u);
  e = find(sel({"10.201.0.6"}, {}, std::nullopt, std::nullopt));  // an IP selects exactly that address
  EXPECT_EQ(e.name, "ua0");
  EXPECT_EQ(e.addr, A("10.201.0.6"));
  // --iface beats every other flag.
  e = find(sel({"ub0"}, {"ua"}, A("10.203.1.1"), std::nullopt));
  EXPECT_EQ(e.name, "ub0");
}

TEST_F(IfaceSelect, RegexMatchesAddressesBeforeNames) {
  auto e = find(sel({}, {"^10\\.202\\."}, std::nullopt, std::nullopt));
  EXPECT_EQ(e.name, "ub0");
  e = find(sel({}, {"^ua"}, std::nullopt, std::nullopt));
  EXPECT_EQ(e.name, "ua0");
  EXPECT_EQ(e.addr, A("10.201.0.5"));
  // "0" occurs in both names and in every address: addresses come first,
  // so the match is an address (whichever the kernel lists first), not ub0's name.
  e = find(sel({}, {"\\.0\\.6$"}, std::nullopt, std::nullopt));
  EXPECT_EQ(e.addr, A("10.201.0.6"));
  // Regexes are tried in order: the first that matches anything wins.
  e = find(sel({}, {"^nomatch", "ub"}, std::nullopt, std::nullopt));
  EXPECT_EQ(e.name, "ub0");
  EXPECT_NE(error_of(sel({}, {"^eth9$"}, std::nullopt, std::nullopt)).find("--iface-regex \"^eth9$\" matched no interface"),
            std::string::npos);
  EXPECT_NE(error_of(sel({}, {"(["}, std::nullopt, std::nullopt)).find("--iface-regex \"([\" is not a valid regex"),
            std::string::npos);
}

TEST_F(IfaceSelect, CanReachUsesTheKernelsRoute) {
  auto e = find(sel({}, {}, A("10.203.1.1"), std::nullopt));
  EXPECT_EQ(e.name, "ua0");
  EXPECT_EQ(e.addr, A("10.201.0.5"));
  e = find(sel({}, {}, A("8.8.8.8"), std::nullopt));  // via the default route
  EXPECT_EQ(e.name, "ub0");
  sh_ok("ip -n " + ns_->name() + " route del default");
  EXPECT_NE(error_of(sel({}, {}, A("8.8.8.8"), std::nullopt)).find("--iface-can-reach 8.8.8.8"),
            std::string::npos);
}

TEST_F(IfaceSelect, PublicIpPicksItsOwnerOrSaysWhatToDo) {
  auto e = find(sel({}, {}, std::nullopt, A("10.201.0.6")));
  EXPECT_EQ(e.name, "ua0");
  EXPECT_EQ(e.addr, A("10.201.0.6"));
  EXPECT_NE(error_of(sel({}, {}, std::nullopt, A("203.0.113.9"))).find("give --iface too"), std::string::npos);
  // NAT: the advertised address is not local; --iface picks the interface.
  e = find(sel({"ub0"}, {}, std::nullopt, A("203.0.113.9")));
  EXPECT_EQ(e.name, "ub0");
  EXPECT_EQ(e.addr, A("10.202.0.7"));
}

}  // namespace
}  // namespace udpring::test
