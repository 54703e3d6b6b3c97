// flanneld's interface flags (--iface, --iface-regex, --iface-can-reach,
// --public-ip) resolved over rtnetlink inside a scratch namespace with two
// interfaces, a default route and a specific route. Nothing touches the
// root namespace.

#include <gtest/gtest.h>

#include <atomic>
#include <unistd.h>

#include "io/netlink/netlink.h"
#include "io/kernel/nic_features.h"
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
  EXPECT_EQ(e.public_ip, e.addr);  // no --public-ip: the interface address is advertised
  // The plain --iface overload is the same selection.
  std::vector<std::string> none;
  ExternalInterface plain;
  run_in_netns(ns_->name(), [&] { plain = io::find_external_interface(none); });
  EXPECT_EQ(plain.name, "ub0");
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
  // ua0's name matches, and ua0 comes first; ub0's address matches too and wins.
  e = find(sel({}, {"ua0|^10\\.202\\."}, std::nullopt, std::nullopt));
  EXPECT_EQ(e.name, "ub0");
  EXPECT_EQ(e.addr, A("10.202.0.7"));
  // Loopback addresses do not count (flannel's GetInterfaceIP4Addrs): lo's
  // 127.0.0.1 is the only address these match.
  EXPECT_NE(error_of(sel({}, {"\\.0\\.1$"}, std::nullopt, std::nullopt)).find("matched no interface"),
            std::string::npos);
  EXPECT_NE(error_of(sel({}, {"^127\\."}, std::nullopt, std::nullopt)).find("matched no interface"),
            std::string::npos);
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
  EXPECT_EQ(e.addr, A("10.202.0.7"));         // the socket binds here
  EXPECT_EQ(e.public_ip, A("203.0.113.9"));  // the lease advertises this
  e = find(sel({}, {}, std::nullopt, A("10.201.0.6")));
  EXPECT_EQ(e.public_ip, A("10.201.0.6"));
}

// flanneld's main(): each kind of flag is tried only when every earlier kind
// found nothing, so --iface naming an interface this host lacks still lets a
// regex or --iface-can-reach pick one.
TEST_F(IfaceSelect, LaterFlagsApplyWhenEarlierOnesMatchNothing) {
  auto e = find(sel({"nosuch0", "10.9.9.9"}, {"^ub"}, std::nullopt, std::nullopt));
  EXPECT_EQ(e.name, "ub0");
  e = find(sel({"nosuch0"}, {"^nomatch"}, A("10.203.1.1"), std::nullopt));
  EXPECT_EQ(e.name, "ua0");
  EXPECT_EQ(e.addr, A("10.201.0.5"));
  const std::string err = error_of(sel({"nosuch0"}, {"^eth9$"}, std::nullopt, std::nullopt));
  EXPECT_NE(err.find("--iface nosuch0"), std::string::npos) << err;
  EXPECT_NE(err.find("--iface-regex \"^eth9$\""), std::string::npos) << err;
  // A --public-ip that no interface holds is fine once a flag picks the interface.
  e = find(sel({}, {"^ua"}, std::nullopt, A("203.0.113.9")));
  EXPECT_EQ(e.name, "ua0");
  EXPECT_EQ(e.public_ip, A("203.0.113.9"));
}

// The address of a name (or of a regex-matched name): global before
// link-local, permanent before dynamic, deprecated never.
TEST_F(IfaceSelect, NameTakesThePreferredAddress) {
  const std::string ip = "ip -n " + ns_->name() + " ";
  sh_ok(ip + "link add uc0 type veth peer name xc0");
  sh_ok(ip + "link set uc0 up");
  sh_ok(ip + "link set xc0 up");
  // Listed by the kernel in this order.
  sh_ok(ip + "addr add 169.254.9.9/16 dev uc0");
  sh_ok(ip + "addr add 10.205.0.9/24 dev uc0 preferred_lft 0");                // deprecated
  sh_ok(ip + "addr add 10.206.0.9/24 dev uc0 valid_lft 3600 preferred_lft 3600");  // dynamic
  sh_ok(ip + "addr add 10.204.0.9/24 dev uc0");                                // permanent
  EXPECT_EQ(find(sel({"uc0"}, {}, std::nullopt, std::nullopt)).addr, A("10.204.0.9"));
  EXPECT_EQ(find(sel({}, {"^uc"}, std::nullopt, std::nullopt)).addr, A("10.204.0.9"));
  EXPECT_EQ(find(sel({}, {"^10\\.20[56]\\."}, std::nullopt, std::nullopt)).addr, A("10.206.0.9"));
  // An --iface address is taken as given, deprecated or not.
  EXPECT_EQ(find(sel({"10.205.0.9"}, {}, std::nullopt, std::nullopt)).addr, A("10.205.0.9"));
  sh_ok(ip + "addr del 10.204.0.9/24 dev uc0");
  EXPECT_EQ(find(sel({"uc0"}, {}, std::nullopt, std::nullopt)).addr, A("10.206.0.9"));
  sh_ok(ip + "addr del 10.206.0.9/24 dev uc0");
  EXPECT_EQ(find(sel({"uc0"}, {}, std::nullopt, std::nullopt)).addr, A("169.254.9.9"));
}

// The start-up hint about a missing UDP segmentation offload reads the
// device's features by name through the ethtool ioctl.
TEST_F(IfaceSelect, NicFeatureFollowsEthtool) {
  auto active = [&](const std::string& dev, const char* feature) {
    std::optional<bool> out;
    run_in_netns(ns_->name(), [&] { out = io::nic_feature_active(dev, feature); });
    return out;
  };
  const std::string et = ns_->exec() + "ethtool -K ua0 ";
  sh_ok(et + "tx-udp-segmentation off");
  EXPECT_EQ(active("ua0", "tx-udp-segmentation"), std::optional<bool>(false));
  sh_ok(et + "tx-udp-segmentation on");
  EXPECT_EQ(active("ua0", "tx-udp-segmentation"), std::optional<bool>(true));
  sh_ok(et + "rx-udp-gro-forwarding on");
  EXPECT_EQ(active("ua0", "rx-udp-gro-forwarding"), std::optional<bool>(true));
  sh_ok(et + "rx-udp-gro-forwarding off");
  EXPECT_EQ(active("ua0", "rx-udp-gro-forwarding"), std::optional<bool>(false));
  EXPECT_EQ(active("ua0", "no-such-feature"), std::nullopt);
  EXPECT_EQ(active("nosuchdev0", "tx-udp-segmentation"), std::nullopt);
}

}  // namespace
}  // namespace udpring::test
