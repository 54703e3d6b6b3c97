#include "core/lease.h"

#include <gtest/gtest.h>

#include <set>

#include "core/base64.h"

namespace udpring {
namespace {

using core::AcquirePlan;
using core::Lease;
using core::LeaseEvent;

core::Ipv4Prefix P(const char* text) { return *core::parse_prefix(text); }
core::Be32 A(const char* text) { return *core::parse_ipv4(text); }

core::NetConfig config(const char* json = R"({"Network":"10.5.0.0/16"})") {
  return core::parse_net_config(json);
}

Lease lease(const char* subnet, const char* ip, int64_t id = 7) {
  Lease l;
  l.subnet = P(subnet);
  l.public_ip = A(ip);
  l.store_lease = id;
  l.reservation = id == 0;
  return l;
}

TEST(LeaseKey, FormatsFlannelsLayout) {
  EXPECT_EQ(core::lease_key("/coreos.com/network", P("10.5.34.0/24")),
            "/coreos.com/network/subnets/10.5.34.0-24");
  EXPECT_EQ(core::lease_key("/custom/", P("10.5.34.0/24")), "/custom/subnets/10.5.34.0-24");
  EXPECT_EQ(core::subnets_prefix("/coreos.com/network"), "/coreos.com/network/subnets/");
}

TEST(LeaseKey, ParsesWhatFlannelParses) {
  EXPECT_EQ(core::parse_lease_key("/coreos.com/network/subnets/10.5.34.0-24"), P("10.5.34.0/24"));
  EXPECT_EQ(core::parse_lease_key("10.5.34.0-24"), P("10.5.34.0/24"));
  // Dual-stack keys carry an IPv6 half; the IPv4 half is the lease.
  EXPECT_EQ(core::parse_lease_key("/p/subnets/10.5.34.0-24&fc00:0:0:1::-64"), P("10.5.34.0/24"));
  for (const char* bad : {"/p/subnets/garbage", "/p/subnets/10.5.34.0", "/p/subnets/10.5.34.0-",
                          "/p/subnets/10.5.34.0-33", "/p/subnets/10.5.34.0-2x",
                          "/p/subnets/10.5.34.1-24", "/p/subnets/300.5.34.0-24"}) {
    EXPECT_FALSE(core::parse_lease_key(bad)) << bad;
  }
}

TEST(LeaseValue, ExactBytesOfAStockUdpNode) {
  EXPECT_EQ(core::format_lease_value(A("192.168.1.10")),
            R"({"PublicIP":"192.168.1.10","PublicIPv6":null})");
}

TEST(LeaseValue, ReadsEveryFlannelShape) {
  auto v = core::parse_lease_value(R"({"PublicIP":"192.168.1.10","PublicIPv6":null})");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->public_ip, A("192.168.1.10"));
  EXPECT_EQ(v->backend_type, "");
  v = core::parse_lease_value(R"({"PublicIP":"192.168.1.11"})");  // flannel < 0.15
  ASSERT_TRUE(v);
  v = core::parse_lease_value(
      R"({"publicip":"192.168.1.12","PublicIPv6":null,"BackendType":"vxlan",)"
      R"("BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendV6Data":null})");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->public_ip, A("192.168.1.12"));
  EXPECT_EQ(v->backend_type, "vxlan");
  for (const char* bad : {"", "not json", "[]", "{}", R"({"PublicIP":null})",
                          R"({"PublicIP":"fe80::1"})", R"({"PublicIP":5})"}) {
    EXPECT_FALSE(core::parse_lease_value(bad)) << bad;
  }
}

TEST(LeaseValue, DeepOrHugeValuesAreNotLeases) {
  const std::string ok = R"({"PublicIP":"192.168.1.10","x":)";
  EXPECT_TRUE(core::parse_lease_value(ok + "[[[[1]]]]}"));
  EXPECT_FALSE(core::parse_lease_value(ok + std::string(50000, '[') + std::string(50000, ']') + "}"));
  EXPECT_FALSE(core::parse_lease_value(ok + "\"" + std::string(5000, 'a') + "\"}"));
}

TEST(Acquire, ReusesTheLeaseOfOurPublicIp) {
  const Lease mine = lease("10.5.7.0/24", "192.168.1.10");
  const std::vector<Lease> all{lease("10.5.3.0/24", "192.168.1.11"), mine};
  const AcquirePlan plan =
      core::plan_acquisition(config(), A("192.168.1.10"), P("10.5.9.0/24"), all, 0);
  EXPECT_EQ(plan.kind, AcquirePlan::Kind::kReuse);
  EXPECT_EQ(plan.subnet, P("10.5.7.0/24"));
  ASSERT_TRUE(plan.existing);
  EXPECT_EQ(*plan.existing, mine);
}

TEST(Acquire, ReservationForOurIpIsUsedAsIs) {
  const std::vector<Lease> all{lease("10.5.8.0/24", "192.168.1.10", 0)};
  const AcquirePlan plan = core::plan_acquisition(config(), A("192.168.1.10"), {}, all, 0);
  EXPECT_EQ(plan.kind, AcquirePlan::Kind::kReuse);
  ASSERT_TRUE(plan.existing);
  EXPECT_TRUE(plan.existing->reservation);
}

TEST(Acquire, IncompatibleOwnLeaseIsDeletedButNeverAReservation) {
  // SubnetLen changed from 24 to 25 since the lease was taken.
  const auto cfg = config(R"({"Network":"10.5.0.0/16","SubnetLen":25})");
  const std::vector<Lease> all{lease("10.5.7.0/24", "192.168.1.10"),
                               lease("10.5.9.0/24", "192.168.1.10", 0)};
  const AcquirePlan plan = core::plan_acquisition(cfg, A("192.168.1.10"), {}, all, 0);
  EXPECT_EQ(plan.kind, AcquirePlan::Kind::kCreate);
  ASSERT_EQ(plan.remove.size(), 1u);
  EXPECT_EQ(plan.remove[0], P("10.5.7.0/24"));
  EXPECT_EQ(plan.subnet.length, 25);
  // Both /24s are refused as routes now (wrong length), so their space is
  // free; only exact keys are held, and neither is a /25.
  for (uint64_t r = 0; r < 400; ++r) {
    const AcquirePlan p = core::plan_acquisition(cfg, A("192.168.1.10"), {}, all, r);
    ASSERT_EQ(p.kind, AcquirePlan::Kind::kCreate);
    ASSERT_EQ(p.remove.size(), 1u);
    EXPECT_EQ(p.subnet.length, 25);
  }
  const AcquirePlan inside =
      core::plan_acquisition(cfg, A("192.168.1.10"), P("10.5.9.0/25"), all, 0);
  EXPECT_EQ(inside.subnet, P("10.5.9.0/25"));
}

TEST(Acquire, PreviousSubnetEnvWhenUnheldAndCompatible) {
  const std::vector<Lease> all{lease("10.5.3.0/24", "192.168.1.11")};
  AcquirePlan plan = core::plan_acquisition(config(), A("192.168.1.10"), P("10.5.9.0/24"), all, 0);
  EXPECT_EQ(plan.kind, AcquirePlan::Kind::kCreate);
  EXPECT_EQ(plan.subnet, P("10.5.9.0/24"));
  // Held by someone else: allocate instead.
  plan = core::plan_acquisition(config(), A("192.168.1.10"), P("10.5.3.0/24"), all, 0);
  EXPECT_NE(plan.subnet, P("10.5.3.0/24"));
  // Incompatible (the first subnet is below SubnetMin): allocate instead.
  plan = core::plan_acquisition(config(), A("192.168.1.10"), P("10.5.0.0/24"), all, 0);
  EXPECT_NE(plan.subnet, P("10.5.0.0/24"));
}

TEST(Acquire, RandomPickAmongTheFirstHundredFree) {
  const std::vector<Lease> all{lease("10.5.1.0/24", "192.168.1.11"),
                               lease("10.5.2.0/24", "192.168.1.12", 0)};
  std::set<uint32_t> seen;
  for (uint64_t r = 0; r < 1000; ++r) {
    const AcquirePlan plan = core::plan_acquisition(config(), A("192.168.1.10"), {}, all, r);
    ASSERT_EQ(plan.kind, AcquirePlan::Kind::kCreate);
    const uint32_t third = (plan.subnet.network.host() >> 8) & 0xff;
    EXPECT_GE(third, 3u);    // 10.5.0 is below SubnetMin, .1 and .2 are held
    EXPECT_LE(third, 102u);  // only the first 100 free ones are candidates
    seen.insert(third);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(Acquire, ExhaustedWhenEverySubnetIsHeld) {
  const auto cfg = config(R"({"Network":"10.5.0.0/22","SubnetLen":24})");  // .1 .2 .3 allocatable
  const std::vector<Lease> all{lease("10.5.1.0/24", "192.168.1.11"),
                               lease("10.5.2.0/24", "192.168.1.12"),
                               lease("10.5.3.0/24", "192.168.1.13")};
  EXPECT_EQ(core::plan_acquisition(cfg, A("192.168.1.10"), {}, all, 0).kind,
            AcquirePlan::Kind::kExhausted);
}

// A lease that is never routed (core::judge_leases refuses it) holds only
// its own key: a 0.0.0.0/0 or whole-Network lease blocks nobody's
// allocation, and a /32 inside a subnet does not take that subnet.
TEST(Acquire, RefusedLeasesDoNotBlockAllocation) {
  const auto cfg = config(R"({"Network":"10.5.0.0/22","SubnetLen":24})");  // .1 .2 .3 allocatable
  for (const char* wide : {"0.0.0.0/0", "10.5.0.0/22", "10.5.0.0/16", "10.5.0.0/23"}) {
    const std::vector<Lease> all{lease(wide, "192.168.1.11"), lease("10.5.1.0/24", "192.168.1.12")};
    std::set<std::string> picked;
    for (uint64_t r = 0; r < 50; ++r) {
      const AcquirePlan plan = core::plan_acquisition(cfg, A("192.168.1.10"), {}, all, r);
      ASSERT_EQ(plan.kind, AcquirePlan::Kind::kCreate) << wide;
      picked.insert(core::format_prefix(plan.subnet));
    }
    EXPECT_EQ(picked, (std::set<std::string>{"10.5.2.0/24", "10.5.3.0/24"})) << wide;
  }
  const std::vector<Lease> host{lease("10.5.2.7/32", "192.168.1.11"),
                                lease("10.5.1.0/24", "192.168.1.12"),
                                lease("10.5.3.0/24", "192.168.1.13")};
  EXPECT_EQ(core::plan_acquisition(cfg, A("192.168.1.10"), {}, host, 0).subnet, P("10.5.2.0/24"));
  EXPECT_EQ(core::plan_acquisition(cfg, A("192.168.1.10"), P("10.5.2.0/24"), host, 0).reason,
            "subnet of the previous subnet.env");
}

// A refused lease of exactly a candidate subnet still holds it: its key
// exists (creating it again would fail), and a stock flanneld, which checks
// exact keys, sees it as taken too.
TEST(Acquire, ARefusedLeaseStillHoldsItsOwnKey) {
  const auto cfg = config(R"({"Network":"10.5.0.0/22","SubnetLen":24})");
  const std::vector<Lease> all{lease("10.5.1.0/24", "127.0.0.1"), lease("10.5.2.0/24", "224.0.0.1"),
                               lease("10.5.3.0/24", "10.5.0.9")};
  EXPECT_EQ(core::plan_acquisition(cfg, A("192.168.1.10"), {}, all, 0).kind,
            AcquirePlan::Kind::kExhausted);
  EXPECT_NE(core::plan_acquisition(cfg, A("192.168.1.10"), P("10.5.2.0/24"), all, 0).subnet,
            P("10.5.2.0/24"));
}

// A lease with our PublicIP that loses an overlap (an earlier key of the
// same subnet names another node) is not ours to reuse: every node routes
// that subnet to the earlier lease.
TEST(Acquire, NeverReusesALeaseThatLosesAnOverlap) {
  Lease earlier = lease("10.5.7.0/24", "192.168.1.11");
  earlier.key = "/p/subnets/10.5.7.0-24";
  earlier.created = 10;
  Lease mine = lease("10.5.7.0/24", "192.168.1.10");
  mine.key = "/p/subnets/10.5.7.0-24&fc00::-64";
  mine.created = 20;
  const std::vector<Lease> all{mine, earlier};
  const AcquirePlan plan = core::plan_acquisition(config(), A("192.168.1.10"), P("10.5.7.0/24"), all, 0);
  EXPECT_EQ(plan.kind, AcquirePlan::Kind::kCreate);
  EXPECT_NE(plan.subnet, P("10.5.7.0/24"));
  EXPECT_TRUE(plan.remove.empty());  // compatible: left alone, as someone's data
  // Were ours the earlier one, it would be reused.
  mine.created = 5;
  const std::vector<Lease> first{mine, earlier};
  EXPECT_EQ(core::plan_acquisition(config(), A("192.168.1.10"), {}, first, 0).kind,
            AcquirePlan::Kind::kReuse);
}

TEST(LeaseDiff, RelistYieldsAddsRemovesAndChanges) {
  core::LeaseMap known;
  const std::vector<Lease> first{lease("10.5.1.0/24", "192.168.1.1"),
                                 lease("10.5.2.0/24", "192.168.1.2")};
  auto ev = core::diff_leases(known, first);
  EXPECT_EQ(ev.size(), 2u);
  const std::vector<Lease> second{lease("10.5.2.0/24", "192.168.1.22"),
                                  lease("10.5.3.0/24", "192.168.1.3")};
  ev = core::diff_leases(known, second);
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].kind, LeaseEvent::Kind::kRemoved);
  EXPECT_EQ(ev[0].lease.subnet, P("10.5.1.0/24"));
  EXPECT_EQ(ev[1].kind, LeaseEvent::Kind::kAdded);
  EXPECT_EQ(ev[1].lease.public_ip, A("192.168.1.22"));
  EXPECT_EQ(ev[2].lease.subnet, P("10.5.3.0/24"));
  EXPECT_TRUE(core::diff_leases(known, second).empty());
  core::apply_event(known, {LeaseEvent::Kind::kRemoved, second[0]});
  EXPECT_EQ(known.size(), 1u);
}

// Leases are known by key: two keys of one subnet are two leases, and a
// lease without a key is known by its subnet.
TEST(LeaseDiff, LeasesAreKnownByKey) {
  Lease plain = lease("10.5.1.0/24", "192.168.1.1");
  plain.key = "/p/subnets/10.5.1.0-24";
  Lease dual = lease("10.5.1.0/24", "192.168.1.2");
  dual.key = "/p/subnets/10.5.1.0-24&fc00::-64";
  core::LeaseMap known;
  EXPECT_EQ(core::diff_leases(known, std::vector<Lease>{plain, dual}).size(), 2u);
  EXPECT_EQ(known.size(), 2u);
  auto ev = core::diff_leases(known, std::vector<Lease>{dual});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, LeaseEvent::Kind::kRemoved);
  EXPECT_EQ(ev[0].lease.key, plain.key);
  // A new creation order is a change (the key was deleted and re-created).
  dual.created = 99;
  ev = core::diff_leases(known, std::vector<Lease>{dual});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, LeaseEvent::Kind::kAdded);
  EXPECT_EQ(core::lease_id(lease("10.5.3.0/24", "192.168.1.3")), "10.5.3.0-24");
  EXPECT_EQ(core::lease_id(dual), dual.key);
}

TEST(Base64, RoundTripsAndRejectsJunk) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    EXPECT_EQ(core::base64_decode(core::base64_encode(s)), s);
  }
  EXPECT_EQ(core::base64_encode("/coreos.com/network/config"), "L2NvcmVvcy5jb20vbmV0d29yay9jb25maWc=");
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  EXPECT_EQ(core::base64_decode(core::base64_encode(bytes)), bytes);
  for (const char* bad : {"A", "AB=C", "A===", "AB*D", "=AAA"}) {
    EXPECT_FALSE(core::base64_decode(bad)) << bad;
  }
}

}  // namespace
}  // namespace udpring
