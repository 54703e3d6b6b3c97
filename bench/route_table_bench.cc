// RouteSnapshot lookup cost at cluster sizes from 1 to 100,000 routes.
//
// The route mix imitates a flannel cluster: one /24 per node, allocated at
// random from the cluster networks, plus a few aggregates (/16../23) and
// extra host-ish routes (/25../32). Destinations are mostly inside routed
// space, as on a real overlay, with ~10% uniform addresses (mostly misses).
//
// Lookups in a block are independent, so time_per_lookup is throughput with
// the CPU overlapping several lookups, which is how a worker processes a
// receive batch. Counters: time_per_lookup, miss_pct, mem_bytes (the
// snapshot's memory_bytes()), routes.

#include <arpa/inet.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <unordered_set>
#include <vector>

#include "core/route_table.h"

namespace udpring::core {
namespace {

constexpr size_t kAddressCount = size_t{1} << 20;  // 4 MiB of destinations, streamed
constexpr size_t kBlock = 1024;                    // lookups per benchmark iteration
constexpr size_t kBatch = 64;                      // lookup_batch() size

// Cluster networks node /24s come from, in order of preference.
struct Pool {
  uint32_t network;
  uint8_t length;
};
constexpr Pool kPools[] = {
    {0x0A00'0000u, 8},   // 10.0.0.0/8
    {0x6440'0000u, 10},  // 100.64.0.0/10
    {0xAC10'0000u, 12},  // 172.16.0.0/12
    {0x0B00'0000u, 8},   // 11.0.0.0/8, only needed past ~86k nodes
};

// A random address inside the first pools that together hold `nodes` /24s.
uint32_t random_in_pools(std::mt19937& rng, size_t nodes) {
  size_t capacity = 0;
  size_t pools = 0;
  while (pools < std::size(kPools) && capacity < nodes) {
    capacity += size_t{1} << (24 - kPools[pools].length);
    ++pools;
  }
  const Pool& pool = kPools[rng() % std::max<size_t>(pools, 1)];
  return pool.network | (static_cast<uint32_t>(rng()) & ~Ipv4Prefix::host_mask(pool.length));
}

std::vector<Route> make_routes(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Route> routes;
  std::unordered_set<uint64_t> used;
  const size_t nodes = count <= 20 ? count : count * 90 / 100;
  while (routes.size() < count) {
    const size_t i = routes.size();
    uint8_t len = 24;
    if (i >= nodes) {
      // Alternate aggregates and long extras for the remaining 10%.
      len = static_cast<uint8_t>(i % 2 == 0 ? 16 + rng() % 8 : 25 + rng() % 8);
    }
    const uint32_t net = random_in_pools(rng, nodes) & Ipv4Prefix::host_mask(len);
    if (!used.insert((uint64_t{net} << 8) | len).second) {
      continue;
    }
    // Node i's public address: 192.168.0.0/16 and up, flannel's port.
    routes.push_back(
        Route{Ipv4Prefix{Be32::from_host(net), len},
              NextHop{Be32::from_host(0xC0A8'0000u + static_cast<uint32_t>(i)), htons(8285)}});
  }
  return routes;
}

enum Pattern : int64_t { kRandom = 0, kSequential = 1 };

std::vector<Be32> make_addresses(const std::vector<Route>& routes, Pattern pattern, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Be32> out;
  out.reserve(kAddressCount);
  if (pattern == kRandom) {
    while (out.size() < kAddressCount) {
      uint32_t addr = static_cast<uint32_t>(rng());
      if (rng() % 10 != 0) {
        const Ipv4Prefix& p = routes[rng() % routes.size()].prefix;
        addr = p.network.host() | (addr & ~Ipv4Prefix::host_mask(p.length));
      }
      out.push_back(Be32::from_host(addr));
    }
    return out;
  }
  // Sequential: runs of consecutive addresses through the routes in
  // address order, as when a few flows per subnet dominate.
  std::vector<Route> sorted = routes;
  std::sort(sorted.begin(), sorted.end(), [](const Route& a, const Route& b) {
    return a.prefix.network.host() < b.prefix.network.host();
  });
  while (out.size() < kAddressCount) {
    for (const Route& r : sorted) {
      const uint32_t run = std::min<uint32_t>(16, ~Ipv4Prefix::host_mask(r.prefix.length) + 1);
      for (uint32_t k = 0; k < run && out.size() < kAddressCount; ++k) {
        out.push_back(Be32::from_host(r.prefix.network.host() + k));
      }
    }
  }
  return out;
}

double miss_pct(const RouteSnapshot& snap, const std::vector<Be32>& addrs) {
  size_t misses = 0;
  for (const Be32 a : addrs) {
    misses += snap.lookup(a) == nullptr;
  }
  return 100.0 * static_cast<double>(misses) / static_cast<double>(addrs.size());
}

void report(benchmark::State& state, const RouteSnapshot& snap, double misses) {
  const auto items = static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kBlock);
  state.SetItemsProcessed(items);
  // kIsRate divides by seconds and kInvert flips it: seconds per lookup,
  // printed as e.g. "4.2ns".
  state.counters["time_per_lookup"] = benchmark::Counter(
      static_cast<double>(items), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["miss_pct"] = misses;
  state.counters["mem_bytes"] = static_cast<double>(snap.memory_bytes());
  state.counters["routes"] = static_cast<double>(snap.route_count());
}

void BM_Lookup(benchmark::State& state) {
  const auto routes = make_routes(static_cast<size_t>(state.range(0)), 1);
  const auto snap = RouteSnapshot::build(routes);
  const auto addrs = make_addresses(routes, static_cast<Pattern>(state.range(1)), 2);
  // Results go to an array, as a worker fills its send batch; a
  // DoNotOptimize() per lookup would add a compiler barrier to each.
  std::vector<const NextHop*> out(kBlock);
  size_t next = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < kBlock; ++i) {
      out[i] = snap->lookup(addrs[next + i]);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    next = (next + kBlock) & (kAddressCount - 1);
  }
  report(state, *snap, miss_pct(*snap, addrs));
}

void BM_LookupBatch(benchmark::State& state) {
  const auto routes = make_routes(static_cast<size_t>(state.range(0)), 1);
  const auto snap = RouteSnapshot::build(routes);
  const auto addrs = make_addresses(routes, static_cast<Pattern>(state.range(1)), 2);
  const NextHop* out[kBatch];
  size_t next = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < kBlock; i += kBatch) {
      snap->lookup_batch(std::span(addrs).subspan(next + i, kBatch), out);
      benchmark::DoNotOptimize(out);
      benchmark::ClobberMemory();
    }
    next = (next + kBlock) & (kAddressCount - 1);
  }
  report(state, *snap, miss_pct(*snap, addrs));
}

void BM_Build(benchmark::State& state) {
  const auto routes = make_routes(static_cast<size_t>(state.range(0)), 1);
  size_t bytes = 0;
  for (auto _ : state) {
    auto snap = RouteSnapshot::build(routes);
    bytes = snap->memory_bytes();
    benchmark::DoNotOptimize(snap.get());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
  state.counters["mem_bytes"] = static_cast<double>(bytes);
}

void lookup_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"routes", "seq"});
  for (const int64_t routes : {1, 256, 5000, 100000}) {
    for (const int64_t pattern : {kRandom, kSequential}) {
      b->Args({routes, pattern});
    }
  }
}

BENCHMARK(BM_Lookup)->Apply(lookup_args);
BENCHMARK(BM_LookupBatch)->Apply(lookup_args);
BENCHMARK(BM_Build)->Arg(100000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace udpring::core

BENCHMARK_MAIN();
