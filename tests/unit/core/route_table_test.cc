// RouteSnapshot (longest-prefix match, peer set) and RouteTable (pending set
// and publishing). Concurrency is covered by qsbr_test.cc. Over 500 lines
// because it holds, besides the cases for each prefix boundary of the
// 16-8-8 trie, two independent reference matchers for the randomized
// cross-check of 100,000 routes; they test one class and belong together.

#include "core/route_table.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/ipv4_addr.h"
#include "core/qsbr.h"

namespace udpring::core {
namespace {

Be32 ip(const char* text) {
  const auto addr = parse_ipv4(text);
  EXPECT_TRUE(addr.has_value()) << text;
  return addr.value_or(Be32{});
}

Ipv4Prefix prefix(const char* text) {
  const auto parsed = parse_prefix(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(Ipv4Prefix{});
}

// Peer n lives at 192.168.(n/256).(n%256), port 8285 (flannel's default).
NextHop peer(uint32_t n) { return NextHop{Be32::from_host(0xC0A8'0000u + n), htons(8285)}; }

Route route(const char* text, const NextHop& hop) { return Route{prefix(text), hop}; }

std::unique_ptr<const RouteSnapshot> build(const std::vector<Route>& routes) {
  return RouteSnapshot::build(routes);
}

// Hops as text, so failed expectations print something readable.
std::string text(const NextHop* hop) {
  return hop ? format_ipv4(hop->addr) + ":" + std::to_string(ntohs(hop->port_be)) : "miss";
}
std::string text(const NextHop& hop) { return text(&hop); }
std::string text(const std::optional<NextHop>& hop) { return hop ? text(*hop) : "miss"; }

// What `snap` routes `addr` to, as text ("miss" if nothing).
std::string hop_of(const RouteSnapshot& snap, const char* addr) {
  return text(snap.lookup(ip(addr)));
}

const std::string kMiss = "miss";

TEST(RouteSnapshotTest, LongestPrefixWinsAcrossOverlappingLengths) {
  // Given longest first, so the result cannot depend on input order.
  const auto snap = build({
      route("10.1.2.3/32", peer(4)),
      route("10.1.2.0/24", peer(3)),
      route("10.1.0.0/16", peer(2)),
      route("10.0.0.0/8", peer(1)),
  });
  EXPECT_EQ(hop_of(*snap, "10.1.2.3"), text(peer(4)));
  EXPECT_EQ(hop_of(*snap, "10.1.2.2"), text(peer(3)));
  EXPECT_EQ(hop_of(*snap, "10.1.2.4"), text(peer(3)));
  EXPECT_EQ(hop_of(*snap, "10.1.2.255"), text(peer(3)));
  EXPECT_EQ(hop_of(*snap, "10.1.3.0"), text(peer(2)));
  EXPECT_EQ(hop_of(*snap, "10.1.255.255"), text(peer(2)));
  EXPECT_EQ(hop_of(*snap, "10.0.0.0"), text(peer(1)));
  EXPECT_EQ(hop_of(*snap, "10.2.2.3"), text(peer(1)));
  EXPECT_EQ(hop_of(*snap, "10.255.255.255"), text(peer(1)));
  EXPECT_EQ(hop_of(*snap, "11.1.2.3"), kMiss);
  EXPECT_EQ(hop_of(*snap, "9.255.255.255"), kMiss);
}

TEST(RouteSnapshotTest, DefaultRouteCoversWholeSpace) {
  const auto snap = build({route("0.0.0.0/0", peer(1)), route("10.5.0.0/24", peer(2))});
  EXPECT_EQ(hop_of(*snap, "0.0.0.0"), text(peer(1)));
  EXPECT_EQ(hop_of(*snap, "1.2.3.4"), text(peer(1)));
  EXPECT_EQ(hop_of(*snap, "255.255.255.255"), text(peer(1)));
  EXPECT_EQ(hop_of(*snap, "10.5.0.77"), text(peer(2)));
  EXPECT_EQ(hop_of(*snap, "10.5.1.0"), text(peer(1)));
}

TEST(RouteSnapshotTest, HostRouteMatchesOnlyItsAddress) {
  const auto snap = build({route("172.16.9.9/32", peer(7))});
  EXPECT_EQ(hop_of(*snap, "172.16.9.9"), text(peer(7)));
  EXPECT_EQ(hop_of(*snap, "172.16.9.8"), kMiss);
  EXPECT_EQ(hop_of(*snap, "172.16.9.10"), kMiss);
  EXPECT_EQ(hop_of(*snap, "172.16.8.9"), kMiss);
}

TEST(RouteSnapshotTest, MissReturnsNullptr) {
  const auto empty = build({});
  EXPECT_EQ(empty->lookup(ip("10.0.0.1")), nullptr);
  EXPECT_EQ(empty->lookup(ip("0.0.0.0")), nullptr);
  EXPECT_EQ(empty->route_count(), 0u);

  const auto snap = build({route("10.244.3.0/24", peer(1))});
  EXPECT_EQ(snap->lookup(ip("10.244.4.1")), nullptr);
  EXPECT_EQ(snap->lookup(ip("10.245.3.1")), nullptr);
}

TEST(RouteSnapshotTest, DuplicatePrefixLastOneWins) {
  const auto snap = build({
      route("10.244.1.0/24", peer(1)),
      route("10.244.2.0/24", peer(2)),
      route("10.244.1.0/24", peer(3)),
  });
  EXPECT_EQ(hop_of(*snap, "10.244.1.9"), text(peer(3)));
  EXPECT_EQ(snap->route_count(), 2u);
  // peer(1) no longer backs any route, so it is not a peer either.
  EXPECT_FALSE(snap->is_peer(peer(1).addr));
}

TEST(RouteSnapshotTest, HostBitsOfPrefixAreIgnored) {
  const Route sloppy{Ipv4Prefix{ip("10.1.2.3"), 24}, peer(1)};
  const auto snap = RouteSnapshot::build(std::span(&sloppy, 1));
  EXPECT_EQ(hop_of(*snap, "10.1.2.200"), text(peer(1)));
  ASSERT_EQ(snap->routes().size(), 1u);
  EXPECT_EQ(snap->routes()[0].prefix, prefix("10.1.2.0/24"));
}

TEST(RouteSnapshotTest, RejectsPrefixLongerThan32) {
  const Route bad{Ipv4Prefix{ip("10.1.2.3"), 33}, peer(1)};
  EXPECT_THROW(RouteSnapshot::build(std::span(&bad, 1)), std::invalid_argument);
}

// One prefix alone: its first and last address hit, the addresses just
// outside miss. Prefix lengths around each level boundary of the 16-8-8
// trie, at the bottom, middle and top of the address space.
TEST(RouteSnapshotTest, PrefixBoundaries) {
  struct Case {
    const char* name;
    const char* prefix;
    const char* first;
    const char* last;
    const char* below;  // nullptr: no address below
    const char* above;  // nullptr: no address above
  };
  const Case cases[] = {
      {"bottom /15", "0.0.0.0/15", "0.0.0.0", "0.1.255.255", nullptr, "0.2.0.0"},
      {"bottom /16", "0.0.0.0/16", "0.0.0.0", "0.0.255.255", nullptr, "0.1.0.0"},
      {"bottom /17", "0.0.0.0/17", "0.0.0.0", "0.0.127.255", nullptr, "0.0.128.0"},
      {"bottom /24", "0.0.0.0/24", "0.0.0.0", "0.0.0.255", nullptr, "0.0.1.0"},
      {"bottom /25", "0.0.0.0/25", "0.0.0.0", "0.0.0.127", nullptr, "0.0.0.128"},
      {"bottom /32", "0.0.0.0/32", "0.0.0.0", "0.0.0.0", nullptr, "0.0.0.1"},
      {"mid /15", "10.2.0.0/15", "10.2.0.0", "10.3.255.255", "10.1.255.255", "10.4.0.0"},
      {"mid /16", "10.3.0.0/16", "10.3.0.0", "10.3.255.255", "10.2.255.255", "10.4.0.0"},
      {"mid /17", "10.3.128.0/17", "10.3.128.0", "10.3.255.255", "10.3.127.255", "10.4.0.0"},
      {"mid /23", "10.3.6.0/23", "10.3.6.0", "10.3.7.255", "10.3.5.255", "10.3.8.0"},
      {"mid /24", "10.3.7.0/24", "10.3.7.0", "10.3.7.255", "10.3.6.255", "10.3.8.0"},
      {"mid /25", "10.3.7.128/25", "10.3.7.128", "10.3.7.255", "10.3.7.127", "10.3.8.0"},
      {"mid /31", "10.3.7.254/31", "10.3.7.254", "10.3.7.255", "10.3.7.253", "10.3.8.0"},
      {"mid /32", "10.3.7.255/32", "10.3.7.255", "10.3.7.255", "10.3.7.254", "10.3.8.0"},
      {"top /15", "255.254.0.0/15", "255.254.0.0", "255.255.255.255", "255.253.255.255", nullptr},
      {"top /16", "255.255.0.0/16", "255.255.0.0", "255.255.255.255", "255.254.255.255", nullptr},
      {"top /17", "255.255.128.0/17", "255.255.128.0", "255.255.255.255", "255.255.127.255",
       nullptr},
      {"top /23", "255.255.254.0/23", "255.255.254.0", "255.255.255.255", "255.255.253.255",
       nullptr},
      {"top /24", "255.255.255.0/24", "255.255.255.0", "255.255.255.255", "255.255.254.255",
       nullptr},
      {"top /25", "255.255.255.128/25", "255.255.255.128", "255.255.255.255", "255.255.255.127",
       nullptr},
      {"top /31", "255.255.255.254/31", "255.255.255.254", "255.255.255.255", "255.255.255.253",
       nullptr},
      {"top /32", "255.255.255.255/32", "255.255.255.255", "255.255.255.255", "255.255.255.254",
       nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto snap = build({route(c.prefix, peer(1))});
    EXPECT_EQ(hop_of(*snap, c.first), text(peer(1)));
    EXPECT_EQ(hop_of(*snap, c.last), text(peer(1)));
    if (c.below != nullptr) {
      EXPECT_EQ(hop_of(*snap, c.below), kMiss);
    }
    if (c.above != nullptr) {
      EXPECT_EQ(hop_of(*snap, c.above), kMiss);
    }
  }
}

// A longer prefix splits a shorter one's leaf into a child group; the rest
// of that group must keep the shorter prefix's hop, at both levels.
TEST(RouteSnapshotTest, SplitGroupsKeepCoveringHop) {
  const auto snap = build({
      route("10.0.0.0/15", peer(1)),
      route("10.1.0.0/17", peer(2)),
      route("10.1.7.0/24", peer(3)),
      route("10.1.7.64/26", peer(4)),
  });
  EXPECT_EQ(hop_of(*snap, "10.0.9.9"), text(peer(1)));
  EXPECT_EQ(hop_of(*snap, "10.1.128.0"), text(peer(1)));
  EXPECT_EQ(hop_of(*snap, "10.1.6.255"), text(peer(2)));
  EXPECT_EQ(hop_of(*snap, "10.1.7.63"), text(peer(3)));
  EXPECT_EQ(hop_of(*snap, "10.1.7.64"), text(peer(4)));
  EXPECT_EQ(hop_of(*snap, "10.1.7.127"), text(peer(4)));
  EXPECT_EQ(hop_of(*snap, "10.1.7.128"), text(peer(3)));
  EXPECT_EQ(hop_of(*snap, "10.1.8.0"), text(peer(2)));
}

TEST(RouteSnapshotTest, IsPeerMatchesNextHopAddressesOnly) {
  const NextHop other_port{peer(1).addr, htons(9999)};
  const auto snap = build({
      route("10.244.1.0/24", peer(1)),
      route("10.244.2.0/24", peer(2)),
      route("10.244.3.0/24", peer(1)),
      route("10.244.4.0/24", other_port),
  });
  EXPECT_TRUE(snap->is_peer(peer(1).addr));
  EXPECT_TRUE(snap->is_peer(peer(2).addr));
  EXPECT_FALSE(snap->is_peer(peer(3).addr));
  // A routed destination is not a sender we accept.
  EXPECT_FALSE(snap->is_peer(ip("10.244.1.1")));
  EXPECT_FALSE(snap->is_peer(ip("0.0.0.0")));
  EXPECT_FALSE(build({})->is_peer(peer(1).addr));
}

TEST(RouteSnapshotTest, IsPeerHandlesZeroAddressAndManyPeers) {
  std::vector<Route> routes;
  for (uint32_t n = 0; n < 5000; ++n) {
    routes.push_back(Route{Ipv4Prefix{Be32::from_host(0x0A00'0000u + (n << 8)), 24}, peer(n)});
  }
  routes.push_back(route("172.16.0.0/16", NextHop{ip("0.0.0.0"), htons(8285)}));
  const auto snap = RouteSnapshot::build(routes);
  for (uint32_t n = 0; n < 5000; ++n) {
    ASSERT_TRUE(snap->is_peer(peer(n).addr)) << n;
  }
  for (uint32_t n = 5000; n < 20000; ++n) {
    ASSERT_FALSE(snap->is_peer(peer(n).addr)) << n;
  }
  EXPECT_TRUE(snap->is_peer(ip("0.0.0.0")));
}

TEST(RouteSnapshotTest, RoutesAreSortedByNetworkThenLength) {
  const auto snap = build({
      route("10.1.0.0/16", peer(1)),
      route("9.0.0.0/8", peer(2)),
      route("10.0.0.0/8", peer(3)),
      route("10.1.0.0/24", peer(4)),
  });
  const std::vector<Route> expected = {
      route("9.0.0.0/8", peer(2)),
      route("10.0.0.0/8", peer(3)),
      route("10.1.0.0/16", peer(1)),
      route("10.1.0.0/24", peer(4)),
  };
  EXPECT_EQ(std::vector<Route>(snap->routes().begin(), snap->routes().end()), expected);
}

TEST(RouteSnapshotTest, MemoryBytesAndRouteCount) {
  const auto empty = build({});
  // The root array alone is 2^16 four-byte entries.
  EXPECT_GE(empty->memory_bytes(), 65536u * 4u);
  const auto snap = build({
      route("10.0.0.0/8", peer(1)),
      route("10.1.2.0/24", peer(2)),
      route("10.1.2.128/25", peer(3)),
  });
  EXPECT_EQ(snap->route_count(), 3u);
  // Plus one level-2 and one level-3 group of 256 entries.
  EXPECT_GE(snap->memory_bytes(), empty->memory_bytes() + 2u * 256u * 4u);
}

// ---- Randomized cross-check against independent references ----

struct RandomTable {
  std::vector<Route> routes;     // as given to build(), duplicates included
  std::vector<Route> effective;  // one per prefix, last duplicate wins
};

// Lengths 8..32, weighted toward 16..28 (node subnets and their neighbours).
RandomTable random_table(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> bucket(0, 9);
  std::uniform_int_distribution<int> short_len(8, 15);
  std::uniform_int_distribution<int> mid_len(16, 28);
  std::uniform_int_distribution<int> long_len(29, 32);
  RandomTable table;
  std::unordered_map<uint64_t, size_t> index;
  for (size_t i = 0; i < count; ++i) {
    const int b = bucket(rng);
    const auto len = static_cast<uint8_t>(b == 0   ? short_len(rng)
                                          : b == 9 ? long_len(rng)
                                                   : mid_len(rng));
    // Networks in 0.0.0.0/1 only, so uniform probes in the upper half miss
    // (the /8../15 routes alone would cover the whole space).
    const uint32_t net = static_cast<uint32_t>(rng()) & 0x7FFF'FFFFu & Ipv4Prefix::host_mask(len);
    const NextHop hop{Be32::from_host(static_cast<uint32_t>(rng())), static_cast<uint16_t>(rng())};
    const Route r{Ipv4Prefix{Be32::from_host(net), len}, hop};
    table.routes.push_back(r);
    const uint64_t key = (uint64_t{net} << 8) | len;
    const auto [it, added] = index.try_emplace(key, table.effective.size());
    if (added) {
      table.effective.push_back(r);
    } else {
      table.effective[it->second] = r;
    }
  }
  return table;
}

// Reference 1: a per-length hash map, probed from /32 down to /0.
class HashReference {
 public:
  explicit HashReference(const std::vector<Route>& effective) {
    for (const Route& r : effective) {
      by_length_[r.prefix.length].emplace(r.prefix.network.host(), r.hop);
    }
  }
  std::optional<NextHop> lookup(uint32_t addr) const {
    for (int len = 32; len >= 0; --len) {
      const auto& map = by_length_[static_cast<size_t>(len)];
      if (map.empty()) {
        continue;
      }
      const auto it = map.find(addr & Ipv4Prefix::host_mask(static_cast<uint8_t>(len)));
      if (it != map.end()) {
        return it->second;
      }
    }
    return std::nullopt;
  }

 private:
  std::array<std::unordered_map<uint32_t, NextHop>, 33> by_length_;
};

// Reference 2: a linear scan over every route, the way flannel's
// proxy_amd64.c did it. Too slow for every address, so used on a sample.
std::optional<NextHop> linear_lookup(const std::vector<Route>& effective, uint32_t addr) {
  const Route* best = nullptr;
  for (const Route& r : effective) {
    if (r.prefix.contains(Be32::from_host(addr)) &&
        (best == nullptr || r.prefix.length > best->prefix.length)) {
      best = &r;
    }
  }
  return best ? std::optional<NextHop>(best->hop) : std::nullopt;
}

std::optional<NextHop> hop_at(const RouteSnapshot& snap, uint32_t addr) {
  const NextHop* hop = snap.lookup(Be32::from_host(addr));
  return hop ? std::optional<NextHop>(*hop) : std::nullopt;
}

TEST(RouteSnapshotRandomTest, HundredThousandRoutesMatchReferences) {
  const RandomTable table = random_table(100'000, 20240501);
  const auto snap = RouteSnapshot::build(table.routes);
  ASSERT_EQ(snap->route_count(), table.effective.size());
  const HashReference reference(table.effective);

  // Probe addresses: uniform ones (mostly short-prefix hits and misses) and
  // ones inside a random route (deep levels), then every route's network
  // and broadcast address (the edges of each expansion).
  std::mt19937 rng(7);
  std::vector<uint32_t> probes;
  probes.reserve(1'000'000 + 2 * table.effective.size());
  std::uniform_int_distribution<size_t> pick(0, table.effective.size() - 1);
  for (size_t i = 0; i < 1'000'000; ++i) {
    const uint32_t random = static_cast<uint32_t>(rng());
    if (i % 2 == 0) {
      probes.push_back(random);
    } else {
      const Ipv4Prefix& p = table.effective[pick(rng)].prefix;
      probes.push_back(p.network.host() | (random & ~Ipv4Prefix::host_mask(p.length)));
    }
  }
  for (const Route& r : table.effective) {
    probes.push_back(r.prefix.network.host());
    probes.push_back(r.prefix.network.host() | ~Ipv4Prefix::host_mask(r.prefix.length));
  }

  // The linear scan vouches for the hash reference on a sample; the hash
  // reference then checks every probe.
  for (size_t i = 0; i < probes.size(); i += probes.size() / 2000) {
    const auto linear = linear_lookup(table.effective, probes[i]);
    ASSERT_EQ(text(reference.lookup(probes[i])), text(linear))
        << format_ipv4(Be32::from_host(probes[i]));
    ASSERT_EQ(text(hop_at(*snap, probes[i])), text(linear))
        << format_ipv4(Be32::from_host(probes[i]));
  }
  size_t hits = 0;
  for (const uint32_t addr : probes) {
    const auto expected = reference.lookup(addr);
    const auto got = hop_at(*snap, addr);
    // Compare first and format only on failure: this loop runs 1.2M times.
    if (got != expected) {
      FAIL() << format_ipv4(Be32::from_host(addr)) << ": got " << text(got) << ", want "
             << text(expected);
    }
    hits += expected.has_value();
  }
  // The probe mix must exercise both outcomes.
  EXPECT_GT(hits, probes.size() / 2);
  EXPECT_LT(hits, probes.size());
}

TEST(RouteSnapshotRandomTest, LookupBatchAgreesWithLookup) {
  const RandomTable table = random_table(20'000, 99);
  const auto snap = RouteSnapshot::build(table.routes);
  std::mt19937 rng(3);
  std::vector<Be32> dsts(4096);
  for (Be32& d : dsts) {
    d = Be32::from_host(static_cast<uint32_t>(rng()));
  }
  for (const size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{64},
                         size_t{1000}, dsts.size()}) {
    SCOPED_TRACE(n);
    std::vector<const NextHop*> out(n, reinterpret_cast<const NextHop*>(&table));
    snap->lookup_batch(std::span(dsts).first(n), out);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(out[i], snap->lookup(dsts[i])) << i;
    }
  }
}

// ---- RouteTable ----

class RouteTableTest : public testing::Test {
 protected:
  Qsbr qsbr_{1};  // no reader ever goes online: everything is freed at once
  RouteTable table_{qsbr_};
};

TEST_F(RouteTableTest, StartsWithEmptySnapshot) {
  const RouteSnapshot* snap = table_.current();
  ASSERT_NE(snap, nullptr);
  EXPECT_EQ(snap->route_count(), 0u);
  EXPECT_EQ(snap->lookup(ip("10.0.0.1")), nullptr);
}

TEST_F(RouteTableTest, ChangesAreInvisibleUntilPublish) {
  table_.set(route("10.244.1.0/24", peer(1)));
  EXPECT_EQ(table_.current()->lookup(ip("10.244.1.1")), nullptr);
  EXPECT_EQ(table_.pending_count(), 1u);
  table_.publish();
  EXPECT_EQ(hop_of(*table_.current(), "10.244.1.1"), text(peer(1)));
}

TEST_F(RouteTableTest, PathLimitsReachEveryRouteOfThePeerAtTheNextPublish) {
  table_.set(route("10.244.1.0/24", peer(1)));
  table_.set(route("10.244.9.0/24", peer(1)));
  table_.set(route("10.244.2.0/24", peer(2)));
  table_.publish();
  EXPECT_TRUE(table_.set_path_limit(peer(1).addr, 1372));
  EXPECT_FALSE(table_.set_path_limit(peer(1).addr, 1372)) << "no change";
  EXPECT_EQ(table_.current()->lookup(ip("10.244.1.1"))->max_inner, 0) << "before publish";
  table_.publish();
  EXPECT_EQ(table_.current()->lookup(ip("10.244.1.1"))->max_inner, 1372);
  EXPECT_EQ(table_.current()->lookup(ip("10.244.9.1"))->max_inner, 1372);
  EXPECT_EQ(table_.current()->lookup(ip("10.244.2.1"))->max_inner, 0);
  // It outlives route changes, and 0 lifts it.
  table_.set(route("10.244.3.0/24", peer(1)));
  table_.publish();
  EXPECT_EQ(table_.current()->lookup(ip("10.244.3.1"))->max_inner, 1372);
  EXPECT_TRUE(table_.set_path_limit(peer(1).addr, 0));
  EXPECT_FALSE(table_.set_path_limit(peer(1).addr, 0));
  table_.publish();
  EXPECT_EQ(table_.current()->lookup(ip("10.244.1.1"))->max_inner, 0);
}

TEST_F(RouteTableTest, SetSamePrefixReplacesHop) {
  table_.set(route("10.244.1.0/24", peer(1)));
  table_.set(route("10.244.1.0/24", peer(2)));
  table_.publish();
  EXPECT_EQ(hop_of(*table_.current(), "10.244.1.1"), text(peer(2)));
  EXPECT_EQ(table_.current()->route_count(), 1u);
}

TEST_F(RouteTableTest, RemoveFallsBackToCoveringPrefix) {
  table_.set(route("10.244.0.0/16", peer(1)));
  table_.set(route("10.244.1.0/24", peer(2)));
  table_.publish();
  EXPECT_EQ(hop_of(*table_.current(), "10.244.1.1"), text(peer(2)));

  EXPECT_TRUE(table_.remove(prefix("10.244.1.0/24")));
  EXPECT_FALSE(table_.remove(prefix("10.244.1.0/24")));
  // Only the exact prefix is removed, not a covering or covered one.
  EXPECT_FALSE(table_.remove(prefix("10.244.0.0/15")));
  EXPECT_FALSE(table_.remove(prefix("10.244.0.0/17")));
  table_.publish();
  EXPECT_EQ(hop_of(*table_.current(), "10.244.1.1"), text(peer(1)));

  EXPECT_TRUE(table_.remove(prefix("10.244.0.0/16")));
  table_.publish();
  EXPECT_EQ(hop_of(*table_.current(), "10.244.1.1"), kMiss);
  EXPECT_EQ(table_.current()->route_count(), 0u);
}

TEST_F(RouteTableTest, ReplaceAllSwapsWholeSet) {
  table_.set(route("10.244.1.0/24", peer(1)));
  table_.set(route("10.244.2.0/24", peer(2)));
  table_.publish();

  const std::vector<Route> next = {
      route("10.244.2.0/24", peer(5)), route("10.244.3.0/24", peer(6)),
      route("10.244.3.0/24", peer(7)),  // duplicate: last wins
  };
  table_.replace_all(next);
  EXPECT_EQ(table_.pending_count(), 2u);
  table_.publish();
  const RouteSnapshot& snap = *table_.current();
  EXPECT_EQ(hop_of(snap, "10.244.1.1"), kMiss);
  EXPECT_EQ(hop_of(snap, "10.244.2.1"), text(peer(5)));
  EXPECT_EQ(hop_of(snap, "10.244.3.1"), text(peer(7)));
  EXPECT_EQ(snap.route_count(), 2u);
  EXPECT_FALSE(snap.is_peer(peer(1).addr));
  EXPECT_TRUE(snap.is_peer(peer(7).addr));
}

TEST_F(RouteTableTest, InvalidRouteLeavesPendingSetUnchanged) {
  table_.set(route("10.244.1.0/24", peer(1)));
  const std::vector<Route> bad = {route("10.244.2.0/24", peer(2)),
                                  Route{Ipv4Prefix{ip("10.0.0.0"), 40}, peer(3)}};
  EXPECT_THROW(table_.replace_all(bad), std::invalid_argument);
  EXPECT_THROW(table_.set(bad[1]), std::invalid_argument);
  EXPECT_EQ(table_.pending_count(), 1u);
  table_.publish();
  EXPECT_EQ(hop_of(*table_.current(), "10.244.1.1"), text(peer(1)));
}

TEST_F(RouteTableTest, PublishWithNoReadersOnlineFreesAtOnce) {
  for (int i = 0; i < 3; ++i) {
    table_.publish();
  }
  EXPECT_EQ(table_.reclaim(), 0u);
}

}  // namespace
}  // namespace udpring::core
