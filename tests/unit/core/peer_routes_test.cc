#include "core/peer_routes.h"

#include <gtest/gtest.h>

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

class PeerRoutesTest : public ::testing::Test {
 protected:
  core::Qsbr qsbr{1};
  core::RouteTable table{qsbr};
  core::PeerRoutes routes{table, P("10.5.1.0/24"), A("192.168.1.1"), 8285};

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

}  // namespace
}  // namespace udpring
