#include "core/lease_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace udpring {
namespace {

using core::Lease;
using core::LeaseRefusal;
using core::LeaseVerdicts;

core::Ipv4Prefix P(const char* t) { return *core::parse_prefix(t); }
core::Be32 A(const char* t) { return *core::parse_ipv4(t); }

Lease L(const char* subnet, const char* ip, int64_t created = 0, std::string key = "") {
  Lease l;
  l.subnet = P(subnet);
  l.public_ip = A(ip);
  l.created = created;
  l.key = std::move(key);
  return l;
}

// Network 10.5.0.0/16 of /24 leases, on a node whose addresses are
// 192.168.1.1 (its public IP) and 172.17.0.1 (docker0, say).
const core::LeasePolicy kPolicy{P("10.5.0.0/16"), 24, {A("192.168.1.1"), A("172.17.0.1")}};

std::optional<LeaseRefusal> reason_of(const LeaseVerdicts& v, size_t index) {
  for (const auto& r : v.refused) {
    if (r.index == index) return r.reason;
  }
  return std::nullopt;
}

bool accepted(const LeaseVerdicts& v, size_t index) {
  return std::find(v.accepted.begin(), v.accepted.end(), index) != v.accepted.end();
}

TEST(LeasePolicy, ReasonNamesAreTheMetricLabels) {
  EXPECT_EQ(core::refusal_name(LeaseRefusal::kWrongLength), "wrong_length");
  EXPECT_EQ(core::refusal_name(LeaseRefusal::kOutsideNetwork), "outside_network");
  EXPECT_EQ(core::refusal_name(LeaseRefusal::kPublicIpNotUnicast), "public_ip_not_unicast");
  EXPECT_EQ(core::refusal_name(LeaseRefusal::kPublicIpOurs), "public_ip_ours");
  EXPECT_EQ(core::refusal_name(LeaseRefusal::kPublicIpInNetwork), "public_ip_in_network");
  EXPECT_EQ(core::refusal_name(LeaseRefusal::kOverlap), "overlap");
  EXPECT_EQ(static_cast<size_t>(LeaseRefusal::kOverlap) + 1, core::kLeaseRefusalCount);
  EXPECT_NE(core::refusal_text(LeaseRefusal::kWrongLength, kPolicy).find("SubnetLen 24"),
            std::string::npos);
  EXPECT_NE(core::refusal_text(LeaseRefusal::kOutsideNetwork, kPolicy).find("10.5.0.0/16"),
            std::string::npos);
}

TEST(LeasePolicy, ASoundLeasePasses) {
  EXPECT_FALSE(core::check_lease(kPolicy, L("10.5.2.0/24", "192.168.1.2")));
  EXPECT_FALSE(core::check_lease(kPolicy, L("10.5.255.0/24", "8.8.8.8")));
  EXPECT_FALSE(core::check_lease(kPolicy, L("10.5.0.0/24", "10.6.0.1")));  // next to Network: fine
}

TEST(LeasePolicy, EveryShapeButSubnetLenInsideNetworkIsRefused) {
  struct Case {
    const char* subnet;
    LeaseRefusal want;
  };
  for (const Case& c : {
           Case{"10.5.2.7/32", LeaseRefusal::kWrongLength},  // one pod's traffic from everyone
           Case{"10.5.2.0/25", LeaseRefusal::kWrongLength},
           Case{"10.5.2.0/23", LeaseRefusal::kWrongLength},
           Case{"10.5.0.0/16", LeaseRefusal::kWrongLength},  // the Network itself
           Case{"0.0.0.0/0", LeaseRefusal::kWrongLength},    // everything
           Case{"10.6.2.0/24", LeaseRefusal::kOutsideNetwork},
           Case{"192.168.1.0/24", LeaseRefusal::kOutsideNetwork},  // the underlay
       }) {
    const auto why = core::check_lease(kPolicy, L(c.subnet, "192.168.1.2"));
    ASSERT_TRUE(why) << c.subnet;
    EXPECT_EQ(*why, c.want) << c.subnet;
  }
}

TEST(LeasePolicy, PublicIpMustBeSomeoneElsesUnicastAddressOutsideTheOverlay) {
  struct Case {
    const char* ip;
    LeaseRefusal want;
  };
  for (const Case& c : {
           Case{"0.0.0.0", LeaseRefusal::kPublicIpNotUnicast},
           Case{"0.1.2.3", LeaseRefusal::kPublicIpNotUnicast},
           Case{"127.0.0.1", LeaseRefusal::kPublicIpNotUnicast},
           Case{"127.255.0.9", LeaseRefusal::kPublicIpNotUnicast},
           Case{"169.254.0.1", LeaseRefusal::kPublicIpNotUnicast},
           Case{"169.254.169.254", LeaseRefusal::kPublicIpNotUnicast},
           Case{"224.0.0.1", LeaseRefusal::kPublicIpNotUnicast},
           Case{"239.255.255.250", LeaseRefusal::kPublicIpNotUnicast},
           Case{"240.0.0.1", LeaseRefusal::kPublicIpNotUnicast},
           Case{"255.255.255.255", LeaseRefusal::kPublicIpNotUnicast},
           Case{"192.168.1.1", LeaseRefusal::kPublicIpOurs},
           Case{"172.17.0.1", LeaseRefusal::kPublicIpOurs},
           Case{"10.5.9.1", LeaseRefusal::kPublicIpInNetwork},
           Case{"10.5.2.1", LeaseRefusal::kPublicIpInNetwork},  // inside its own subnet
       }) {
    const auto why = core::check_lease(kPolicy, L("10.5.2.0/24", c.ip));
    ASSERT_TRUE(why) << c.ip;
    EXPECT_EQ(*why, c.want) << c.ip;
  }
  // The edges of the refused ranges are fine.
  for (const char* ok : {"1.0.0.0", "126.255.255.255", "128.0.0.0", "169.253.255.255",
                         "169.255.0.0", "223.255.255.255", "10.4.255.255", "10.6.0.0"}) {
    EXPECT_TRUE(core::unicast_public_ip(A(ok))) << ok;
    EXPECT_FALSE(core::check_lease(kPolicy, L("10.5.2.0/24", ok))) << ok;
  }
}

TEST(LeasePolicy, TheEarlierOfTwoLeasesForOneSubnetWins) {
  const std::vector<Lease> leases{L("10.5.2.0/24", "192.168.1.3", 20, "b"),
                                  L("10.5.2.0/24", "192.168.1.2", 10, "a"),
                                  L("10.5.3.0/24", "192.168.1.4", 30, "c")};
  const LeaseVerdicts v = core::judge_leases(kPolicy, leases);
  EXPECT_TRUE(accepted(v, 1));
  EXPECT_TRUE(accepted(v, 2));
  ASSERT_EQ(v.refused.size(), 1u);
  EXPECT_EQ(v.refused[0].index, 0u);
  EXPECT_EQ(v.refused[0].reason, LeaseRefusal::kOverlap);
  ASSERT_TRUE(v.refused[0].winner);
  EXPECT_EQ(*v.refused[0].winner, 1u);
  // Accepted in creation order.
  EXPECT_EQ(v.accepted, (std::vector<size_t>{1, 2}));
}

TEST(LeasePolicy, EqualCreationOrderIsDecidedByKeyTheSameOnEveryNode) {
  // One etcd txn: one create_revision for both keys.
  const Lease plain = L("10.5.2.0/24", "192.168.1.2", 7, "/p/subnets/10.5.2.0-24");
  const Lease dual = L("10.5.2.0/24", "192.168.1.3", 7, "/p/subnets/10.5.2.0-24&fc00::-64");
  for (const auto& leases : {std::vector<Lease>{plain, dual}, std::vector<Lease>{dual, plain}}) {
    const LeaseVerdicts v = core::judge_leases(kPolicy, leases);
    ASSERT_EQ(v.accepted.size(), 1u);
    EXPECT_EQ(leases[v.accepted[0]].key, plain.key);
  }
}

TEST(LeasePolicy, RefusedLeasesHoldNoSpace) {
  // Whatever length the policy wants, the leases of other lengths are
  // refused for their length before overlap is looked at, so they never
  // shadow the ones that have it.
  core::LeasePolicy any = kPolicy;
  const std::vector<Lease> leases{L("10.5.2.0/24", "192.168.1.2", 1), L("10.5.0.0/22", "192.168.1.3", 2),
                                  L("10.5.2.128/25", "192.168.1.4", 3),
                                  L("10.5.4.0/24", "192.168.1.5", 4)};
  std::vector<const Lease*> ptrs;
  for (const Lease& l : leases) ptrs.push_back(&l);
  for (const uint8_t len : {22, 24, 25}) {
    any.subnet_len = len;
    const LeaseVerdicts v = core::judge_leases(any, std::span<const Lease* const>(ptrs));
    for (size_t i = 0; i < leases.size(); ++i) {
      if (leases[i].subnet.length != len) {
        EXPECT_EQ(reason_of(v, i), LeaseRefusal::kWrongLength);
      } else {
        EXPECT_TRUE(accepted(v, i)) << i;
      }
    }
  }
  // A refused lease holds no space: an invalid earlier /16 does not shadow
  // the valid /24s inside it.
  const std::vector<Lease> shadow{L("10.5.0.0/16", "192.168.1.9", 1), L("0.0.0.0/0", "192.168.1.9", 2),
                                  L("10.5.2.0/24", "192.168.1.2", 3)};
  const LeaseVerdicts v = core::judge_leases(kPolicy, shadow);
  EXPECT_EQ(reason_of(v, 0), LeaseRefusal::kWrongLength);
  EXPECT_EQ(reason_of(v, 1), LeaseRefusal::kWrongLength);
  EXPECT_TRUE(accepted(v, 2));
  // Nor does one with a bad next hop.
  const std::vector<Lease> bad_hop{L("10.5.2.0/24", "127.0.0.1", 1), L("10.5.2.0/24", "192.168.1.2", 2)};
  const LeaseVerdicts w = core::judge_leases(kPolicy, bad_hop);
  EXPECT_EQ(reason_of(w, 0), LeaseRefusal::kPublicIpNotUnicast);
  EXPECT_TRUE(accepted(w, 1));
}

// The overlap step on any mix of lengths (containment either way, with
// neighbours apart), against a brute force over random prefixes.
TEST(LeasePolicy, FirstClaimsMatchesBruteForceOnMixedLengths) {
  std::mt19937 rng(42);
  size_t clashes = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<core::Ipv4Prefix> in_order;
    for (int i = 0; i < 40; ++i) {
      const uint8_t len = static_cast<uint8_t>(18 + rng() % 15);  // /18../32 inside 10.5.0.0/16
      const uint32_t addr = (0x0A050000u | (rng() & 0xffffu)) & core::Ipv4Prefix::host_mask(len);
      in_order.push_back({core::Be32::from_host(addr), len});
    }
    const auto got = core::first_claims(in_order);
    ASSERT_EQ(got.size(), in_order.size());
    std::vector<bool> held(in_order.size(), false);
    for (size_t i = 0; i < in_order.size(); ++i) {
      std::optional<size_t> clash;
      for (size_t j = 0; j < i && !clash; ++j) {
        if (held[j] && (in_order[j].contains(in_order[i]) || in_order[i].contains(in_order[j]))) {
          clash = j;
        }
      }
      held[i] = !clash;
      ASSERT_EQ(got[i].has_value(), clash.has_value())
          << "round " << round << " prefix " << i << " " << core::format_prefix(in_order[i]);
      if (got[i]) {
        // Of several it overlaps (a wide one over narrow ones) any may be named.
        const size_t j = *got[i];
        ASSERT_LT(j, i);
        EXPECT_TRUE(held[j]);
        EXPECT_TRUE(in_order[j].contains(in_order[i]) || in_order[i].contains(in_order[j]));
      }
      clashes += clash.has_value();
    }
  }
  EXPECT_GT(clashes, 1000u);  // the random sets do collide
}

TEST(LeasePolicy, FirstClaimsEdges) {
  // Adjacent prefixes do not overlap; the whole space overlaps everything.
  const std::vector<core::Ipv4Prefix> a{P("10.5.1.0/24"), P("10.5.2.0/24"), P("10.5.0.0/24"),
                                        P("10.5.3.255/32"), P("0.0.0.0/0"), P("10.5.2.128/25"),
                                        P("255.255.255.255/32")};
  const auto got = core::first_claims(a);
  EXPECT_FALSE(got[0]);
  EXPECT_FALSE(got[1]);
  EXPECT_FALSE(got[2]);
  EXPECT_FALSE(got[3]);
  ASSERT_TRUE(got[4]);  // any of the four before it may be named
  EXPECT_LT(*got[4], 4u);
  EXPECT_EQ(got[5], 1u);
  EXPECT_FALSE(got[6]);
}

// Our own lease is exempt from the shape and next-hop checks but not from
// the creation order: an earlier lease beats it, a later one loses to it.
TEST(LeasePolicy, OwnLeaseIsExemptFromChecksButNotFromOrder) {
  const std::vector<Lease> leases{L("10.5.1.0/24", "192.168.1.1", 5, "own"),
                                  L("10.5.1.0/24", "192.168.1.2", 9, "later"),
                                  L("10.5.2.0/24", "192.168.1.3", 1, "peer")};
  LeaseVerdicts v = core::judge_leases(kPolicy, leases, 0);
  EXPECT_TRUE(accepted(v, 0));  // its PublicIP is ours, and that is fine for our own lease
  EXPECT_EQ(reason_of(v, 1), LeaseRefusal::kOverlap);
  EXPECT_EQ(v.refused[0].winner, 0u);
  EXPECT_TRUE(accepted(v, 2));
  const std::vector<Lease> beaten{L("10.5.1.0/24", "192.168.1.1", 5, "own"),
                                  L("10.5.1.0/24", "192.168.1.2", 4, "earlier")};
  v = core::judge_leases(kPolicy, beaten, 0);
  EXPECT_EQ(reason_of(v, 0), LeaseRefusal::kOverlap);
  EXPECT_TRUE(accepted(v, 1));
  // Without `own`, the same lease is just one with our address.
  v = core::judge_leases(kPolicy, leases);
  EXPECT_EQ(reason_of(v, 0), LeaseRefusal::kPublicIpOurs);
  EXPECT_TRUE(accepted(v, 1));  // and so no longer holds the subnet
}

// 5,000 leases (a large cluster), all different, are judged without one
// refusal, and a duplicate of each loses to it.
TEST(LeasePolicy, LargeSetsAreJudgedExactly) {
  const core::LeasePolicy wide{P("10.0.0.0/8"), 24, {A("198.51.100.1")}};
  std::vector<Lease> leases;
  for (int i = 0; i < 5000; ++i) {
    Lease l;
    l.subnet = {core::Be32::from_host(0x0A000000u | (static_cast<uint32_t>(i + 1) << 8)), 24};
    l.public_ip = core::Be32::from_host(0xC0A80000u + static_cast<uint32_t>(i) + 2);
    l.created = 5000 - i;  // the input order is not the creation order
    l.key = std::to_string(i);
    leases.push_back(l);
  }
  LeaseVerdicts v = core::judge_leases(wide, leases);
  EXPECT_EQ(v.accepted.size(), 5000u);
  EXPECT_TRUE(v.refused.empty());
  for (size_t i = 1; i < v.accepted.size(); ++i) {
    EXPECT_TRUE(core::created_before(leases[v.accepted[i - 1]], leases[v.accepted[i]]));
  }
  const size_t n = leases.size();
  for (size_t i = 0; i < n; ++i) {
    Lease dup = leases[i];
    dup.key += "-dup";
    dup.created += 1;
    leases.push_back(dup);
  }
  v = core::judge_leases(wide, leases);
  EXPECT_EQ(v.accepted.size(), 5000u);
  ASSERT_EQ(v.refused.size(), 5000u);
  for (const auto& r : v.refused) {
    EXPECT_GE(r.index, n);
    EXPECT_EQ(r.reason, LeaseRefusal::kOverlap);
    EXPECT_EQ(r.winner, r.index - n);
  }
}

}  // namespace
}  // namespace udpring
