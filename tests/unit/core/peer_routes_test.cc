#include "core/peer_routes.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "tests/support/count_of.h"

namespace udpring {
namespace {

using core::Lease;
using core::LeaseEvent;

core::Ipv4Prefix P(const char* t) { return *core::parse_prefix(t); }
core::Be32 A(const char* t) { return *core::parse_ipv4(t); }
Lease L(const char* subnet, const char* ip, const char* backend = "") {
  Lease l;
  l.subnet = P(subnet);
  l.public_ip = A(ip);
  l.backend_type = backend;
  return l;
}
Lease K(const char* key, int64_t created, const char* subnet, const char* ip) {
  Lease l = L(subnet, ip);
  l.key = key;
  l.created = created;
  return l;
}
uint64_t count(const std::array<uint64_t, core::kLeaseRefusalCount>& a, core::LeaseRefusal r) {
  return a[static_cast<size_t>(r)];
}

class PeerRoutesTest : public ::testing::Test {
 protected:
  core::Qsbr qsbr{1};
  core::RouteTable table{qsbr};
  core::PeerRoutes routes{table, {P("10.5.0.0/16"), 24, {A("192.168.1.1"), A("172.17.0.1")}},
                          P("10.5.1.0/24"), A("192.168.1.1"), 8285};

  const core::NextHop* hop(const char* dst) { return table.current()->lookup(A(dst)); }
};

TEST_F(PeerRoutesTest, SnapshotRoutesPeersButNotOurselves) {
  core::LeaseUpdate u;
  u.reset = true;
  u.leases = {L("10.5.1.0/24", "192.168.1.1"), L("10.5.2.0/24", "192.168.1.2"),
              L("10.5.3.0/24", "192.168.1.3", "vxlan")};
  const auto r = routes.apply(u);
  EXPECT_EQ(r.added, 2u);
  EXPECT_TRUE(r.own_lost.empty());
  EXPECT_EQ(routes.route_count(), 2u);
  EXPECT_EQ(hop("10.5.1.9"), nullptr);  // our own subnet is never routed
  ASSERT_NE(hop("10.5.2.9"), nullptr);
  EXPECT_EQ(hop("10.5.2.9")->addr, A("192.168.1.2"));
  EXPECT_EQ(hop("10.5.2.9")->port_be, htons(8285));
  ASSERT_NE(hop("10.5.3.9"), nullptr);  // BackendType is ignored, as flannel's udp does
}

TEST_F(PeerRoutesTest, EventsAddMoveAndRemove) {
  core::LeaseUpdate u;
  u.events = {{LeaseEvent::Kind::kAdded, L("10.5.2.0/24", "192.168.1.2")},
              {LeaseEvent::Kind::kAdded, L("10.5.2.0/24", "192.168.1.2")},  // a renewal
              {LeaseEvent::Kind::kAdded, L("10.5.4.0/24", "192.168.1.4")}};
  EXPECT_EQ(routes.apply(u).added, 2u);
  u.events = {{LeaseEvent::Kind::kAdded, L("10.5.4.0/24", "192.168.1.44")},
              {LeaseEvent::Kind::kRemoved, L("10.5.2.0/24", "0.0.0.0")},
              {LeaseEvent::Kind::kRemoved, L("10.5.9.0/24", "0.0.0.0")}};  // unknown: no-op
  const auto r = routes.apply(u);
  EXPECT_EQ(r.added, 1u);
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(hop("10.5.2.9"), nullptr);
  EXPECT_EQ(hop("10.5.4.9")->addr, A("192.168.1.44"));
  // A re-list that no longer has 10.5.4.0/24 removes it.
  core::LeaseUpdate reset;
  reset.reset = true;
  reset.leases = {L("10.5.1.0/24", "192.168.1.1")};
  EXPECT_EQ(routes.apply(reset).removed, 1u);
  EXPECT_EQ(routes.route_count(), 0u);
}

TEST_F(PeerRoutesTest, LosingOurLeaseIsReported) {
  core::LeaseUpdate u;
  u.events = {{LeaseEvent::Kind::kAdded, L("10.5.1.0/24", "192.168.1.1")}};  // our renewal
  EXPECT_TRUE(routes.apply(u).own_lost.empty());
  u.events = {{LeaseEvent::Kind::kAdded, L("10.5.1.0/24", "192.168.1.99")}};  // taken over
  EXPECT_NE(routes.apply(u).own_lost.find("192.168.1.99"), std::string::npos);
  u.events = {{LeaseEvent::Kind::kRemoved, L("10.5.1.0/24", "0.0.0.0")}};
  EXPECT_NE(routes.apply(u).own_lost.find("deleted or expired"), std::string::npos);
  core::LeaseUpdate reset;
  reset.reset = true;
  EXPECT_NE(routes.apply(reset).own_lost.find("no longer in the store"), std::string::npos);
}

// A batch is applied in order, as if one update after the other, and
// published once at the end.
TEST_F(PeerRoutesTest, BatchAppliesInOrderAndPublishesTheEndState) {
  using K = LeaseEvent::Kind;
  core::LeaseUpdate reset;
  reset.reset = true;
  reset.leases = {L("10.5.1.0/24", "192.168.1.1"), L("10.5.2.0/24", "192.168.1.2")};
  std::vector<core::LeaseUpdate> batch(3);
  batch[0] = reset;
  batch[1].events = {{K::kAdded, L("10.5.3.0/24", "192.168.1.3")},
                     {K::kRemoved, L("10.5.2.0/24", "192.168.1.2")}};
  batch[2].events = {{K::kAdded, L("10.5.3.0/24", "192.168.1.33")},
                     {K::kAdded, L("10.5.4.0/24", "192.168.1.4")}};
  const core::RouteSnapshot* before = table.current();
  const auto r = routes.apply(std::span<const core::LeaseUpdate>(batch));
  EXPECT_NE(table.current(), before);
  EXPECT_TRUE(r.own_lost.empty());
  EXPECT_EQ(routes.route_count(), 2u);
  EXPECT_EQ(hop("10.5.2.9"), nullptr);
  ASSERT_NE(hop("10.5.3.9"), nullptr);
  EXPECT_EQ(hop("10.5.3.9")->addr, A("192.168.1.33"));
  ASSERT_NE(hop("10.5.4.9"), nullptr);
  // Nothing changed: no new snapshot.
  const core::RouteSnapshot* now = table.current();
  EXPECT_EQ(routes.apply(std::span<const core::LeaseUpdate>(batch.data() + 2, 1)).added, 0u);
  EXPECT_EQ(table.current(), now);
}

// Every kind of bad lease is refused and counted by reason; the good peer
// keeps its route, also for the addresses a bad lease aimed at.
TEST_F(PeerRoutesTest, BadLeasesAreRefusedAndCountedByReason) {
  using R = core::LeaseRefusal;
  core::LeaseUpdate u;
  u.reset = true;
  u.leases = {L("10.5.1.0/24", "192.168.1.1"),  L("10.5.2.0/24", "192.168.1.2"),
              L("10.5.2.7/32", "192.168.1.66"),  // one pod of 10.5.2.0/24, stolen
              L("0.0.0.0/0", "192.168.1.66"),    L("10.5.0.0/16", "192.168.1.66"),
              L("10.6.3.0/24", "192.168.1.66"),  L("10.5.4.0/24", "192.168.1.1"),
              L("10.5.5.0/24", "172.17.0.1"),    L("10.5.6.0/24", "127.0.0.1"),
              L("10.5.7.0/24", "224.0.0.5"),     L("10.5.8.0/24", "169.254.1.1"),
              L("10.5.9.0/24", "255.255.255.255"), L("10.5.10.0/24", "0.0.0.0"),
              L("10.5.11.0/24", "10.5.2.1")};
  const auto r = routes.apply(u);
  EXPECT_TRUE(r.own_lost.empty());
  EXPECT_EQ(r.added, 1u);
  EXPECT_EQ(routes.route_count(), 1u);
  ASSERT_NE(hop("10.5.2.7"), nullptr);
  EXPECT_EQ(hop("10.5.2.7")->addr, A("192.168.1.2"));
  for (const char* dst : {"10.5.3.1", "10.5.4.1", "10.5.6.1", "10.5.11.1", "10.6.3.1", "8.8.8.8"}) {
    EXPECT_EQ(hop(dst), nullptr) << dst;
  }
  const auto& total = routes.refused_total();
  EXPECT_EQ(count(total, R::kWrongLength), 3u);
  EXPECT_EQ(count(total, R::kOutsideNetwork), 1u);
  EXPECT_EQ(count(total, R::kPublicIpOurs), 2u);
  EXPECT_EQ(count(total, R::kPublicIpNotUnicast), 5u);
  EXPECT_EQ(count(total, R::kPublicIpInNetwork), 1u);
  EXPECT_EQ(count(total, R::kOverlap), 0u);
  EXPECT_EQ(routes.refused_now(), total);
  EXPECT_EQ(routes.refused().size(), 12u);
  ASSERT_TRUE(routes.refused().contains("0.0.0.0-0"));
  EXPECT_EQ(routes.refused().at("0.0.0.0-0").reason, R::kWrongLength);

  // The same set again, and renewals (a new expiry): nothing new to count.
  const auto before = total;
  EXPECT_EQ(routes.apply(u).added, 0u);
  for (Lease& l : u.leases) l.expiry_unix += 3600;
  routes.apply(u);
  EXPECT_EQ(routes.refused_total(), before);
  // A refused lease that changes its next hop is a new refusal (counted
  // again), and one that is deleted is no longer refused now.
  core::LeaseUpdate ev;
  ev.events = {{LeaseEvent::Kind::kAdded, L("10.5.6.0/24", "127.0.0.2")},
               {LeaseEvent::Kind::kRemoved, L("0.0.0.0/0", "192.168.1.66")}};
  routes.apply(ev);
  EXPECT_EQ(count(routes.refused_total(), R::kPublicIpNotUnicast), 6u);
  EXPECT_EQ(count(routes.refused_now(), R::kPublicIpNotUnicast), 5u);
  EXPECT_EQ(count(routes.refused_now(), R::kWrongLength), 2u);
  // A refused lease that is fixed becomes a route.
  ev.events = {{LeaseEvent::Kind::kAdded, L("10.5.6.0/24", "192.168.1.6")}};
  EXPECT_EQ(routes.apply(ev).added, 1u);
  ASSERT_NE(hop("10.5.6.1"), nullptr);
  EXPECT_EQ(hop("10.5.6.1")->addr, A("192.168.1.6"));
  EXPECT_EQ(count(routes.refused_now(), R::kPublicIpNotUnicast), 4u);
}

using test::count_of;

// Each refusal is one warning naming the lease, its next hop, the reason
// and what holds the space instead; repeats and renewals say nothing.
TEST_F(PeerRoutesTest, EachRefusalIsLoggedOnce) {
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out)));
  core::LeaseUpdate u;
  u.reset = true;
  u.leases = {L("10.5.1.0/24", "192.168.1.1"), K("/p/subnets/10.5.2.0-24", 1, "10.5.2.0/24", "192.168.1.2"),
              K("/p/subnets/10.5.2.0-24&fc00::-64", 2, "10.5.2.0/24", "192.168.1.66"),
              K("/p/subnets/10.5.2.7-32", 3, "10.5.2.7/32", "192.168.1.66")};
  routes.apply(u);
  routes.apply(u);
  for (Lease& l : u.leases) l.store_lease += 1;  // renewed onto new etcd leases
  routes.apply(u);
  spdlog::set_default_logger(previous);
  const std::string log = out.str();
  EXPECT_EQ(count_of(log, "not routing"), 2u) << log;
  EXPECT_EQ(count_of(log, "[warning] not routing lease /p/subnets/10.5.2.7-32 (10.5.2.7/32 -> "
                          "192.168.1.66): its prefix length is not the network's SubnetLen 24 "
                          "(wrong_length)"),
            1u)
      << log;
  EXPECT_EQ(count_of(log, "not routing lease /p/subnets/10.5.2.0-24&fc00::-64 (10.5.2.0/24 -> "
                          "192.168.1.66): it overlaps an earlier lease (overlap); lease "
                          "/p/subnets/10.5.2.0-24 (10.5.2.0/24 -> 192.168.1.2) holds that space"),
            1u)
      << log;
  EXPECT_EQ(count_of(log, "route 10.5.2.0/24 -> 192.168.1.2:8285"), 1u) << log;
}

// Two leases of one subnet (etcd's plain and dual-stack keys, two Nodes
// with one podCIDR): the earlier one is routed; when it goes, the later
// one is, within the same apply.
TEST_F(PeerRoutesTest, TheLaterOfTwoOverlappingLeasesIsRoutedOnceTheEarlierGoes) {
  core::LeaseUpdate u;
  u.reset = true;
  const Lease first = K("node-a", 100, "10.5.2.0/24", "192.168.1.2");
  const Lease second = K("node-b", 200, "10.5.2.0/24", "192.168.1.3");
  u.leases = {L("10.5.1.0/24", "192.168.1.1"), second, first};
  EXPECT_EQ(routes.apply(u).added, 1u);
  EXPECT_EQ(hop("10.5.2.9")->addr, A("192.168.1.2"));
  ASSERT_TRUE(routes.refused().contains("node-b"));
  EXPECT_EQ(routes.refused().at("node-b").reason, core::LeaseRefusal::kOverlap);
  EXPECT_EQ(routes.refused().at("node-b").winner, "node-a");
  // An event that re-adds the later lease does not move the route.
  core::LeaseUpdate ev;
  ev.events = {{LeaseEvent::Kind::kAdded, second}};
  EXPECT_EQ(routes.apply(ev).added, 0u);
  EXPECT_EQ(hop("10.5.2.9")->addr, A("192.168.1.2"));
  EXPECT_EQ(count(routes.refused_total(), core::LeaseRefusal::kOverlap), 1u);
  // The earlier one is deleted: the later one is routed in its place.
  ev.events = {{LeaseEvent::Kind::kRemoved, first}};
  const auto r = routes.apply(ev);
  EXPECT_EQ(r.added, 1u);
  EXPECT_EQ(r.removed, 0u);
  EXPECT_EQ(hop("10.5.2.9")->addr, A("192.168.1.3"));
  EXPECT_TRUE(routes.refused().empty());
  // And back: a re-created lease is a new, later one; it is refused now.
  Lease again = first;
  again.created = 300;
  ev.events = {{LeaseEvent::Kind::kAdded, again}};
  EXPECT_EQ(routes.apply(ev).added, 0u);
  EXPECT_EQ(hop("10.5.2.9")->addr, A("192.168.1.3"));
  EXPECT_EQ(routes.refused().at("node-a").winner, "node-b");
  EXPECT_EQ(count(routes.refused_total(), core::LeaseRefusal::kOverlap), 2u);
  // A re-list that has only the refused one routes it.
  core::LeaseUpdate relist;
  relist.reset = true;
  relist.leases = {L("10.5.1.0/24", "192.168.1.1"), again};
  EXPECT_EQ(routes.apply(relist).added, 1u);
  EXPECT_EQ(hop("10.5.2.9")->addr, A("192.168.1.2"));
}

// A later lease that claims our subnet is refused, and we keep our lease;
// an earlier one means the cluster routes our subnet elsewhere: lost.
TEST_F(PeerRoutesTest, AnotherLeaseOfOurSubnet) {
  core::LeaseUpdate u;
  u.reset = true;
  u.leases = {K("ours", 50, "10.5.1.0/24", "192.168.1.1"), K("peer", 60, "10.5.2.0/24", "192.168.1.2")};
  EXPECT_TRUE(routes.apply(u).own_lost.empty());
  core::LeaseUpdate ev;
  ev.events = {{LeaseEvent::Kind::kAdded, K("intruder", 70, "10.5.1.0/24", "192.168.1.9")}};
  auto r = routes.apply(ev);
  EXPECT_TRUE(r.own_lost.empty()) << r.own_lost;
  EXPECT_EQ(hop("10.5.1.9"), nullptr);
  ASSERT_TRUE(routes.refused().contains("intruder"));
  EXPECT_EQ(routes.refused().at("intruder").winner, "ours");
  // Its deletion is not the loss of ours.
  ev.events = {{LeaseEvent::Kind::kRemoved, K("intruder", 70, "10.5.1.0/24", "192.168.1.9")}};
  EXPECT_TRUE(routes.apply(ev).own_lost.empty());
  ev.events = {{LeaseEvent::Kind::kAdded, K("elder", 10, "10.5.1.0/24", "192.168.1.9")}};
  r = routes.apply(ev);
  EXPECT_NE(r.own_lost.find("lease elder"), std::string::npos) << r.own_lost;
  EXPECT_NE(r.own_lost.find("created before ours"), std::string::npos) << r.own_lost;
  EXPECT_EQ(hop("10.5.1.9"), nullptr);  // our own subnet is never routed, whoever holds it
  // Our own key deleted: lost, as before.
  ev.events = {{LeaseEvent::Kind::kRemoved, K("ours", 50, "10.5.1.0/24", "192.168.1.1")}};
  EXPECT_NE(routes.apply(ev).own_lost.find("deleted or expired"), std::string::npos);
}

}  // namespace
}  // namespace udpring
