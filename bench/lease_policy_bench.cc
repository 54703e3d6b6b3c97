// What judging the lease set costs the control thread. PeerRoutes re-judges
// every lease it knows on each update (so that a refused lease becomes
// routable as soon as the lease that beat it goes), where it used to touch
// only the changed ones; these numbers show that is cheap next to the
// route-table rebuild that a route change costs either way.
//
//   BM_JudgeLeases/N              core::judge_leases over N leases (1 % of
//                                 them a later duplicate of another's subnet)
//   BM_ApplyRenewal/N             PeerRoutes::apply of one renewal with N
//                                 leases known: no verdict can change, so
//                                 neither a re-judge nor a rebuild
//   BM_ApplyNextHopChange/N       the same for a changed next hop: a
//                                 re-judge and one rebuild
//   BM_RebuildOnly/N              one RouteTable publish of N routes: the
//                                 part of a route change that is not new

#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/lease_policy.h"
#include "core/peer_routes.h"
#include "core/qsbr.h"
#include "core/route_table.h"

namespace udpring::core {
namespace {

const LeasePolicy kPolicy{{Be32::from_host(0x0A000000u), 8}, 24, {Be32::from_host(0xC6336401u)}};

// N leases of 10.0.0.0/8's /24s from 10.0.1.0 on, next hops in
// 172.16.0.0/12, created in random order; every 100th is a later
// duplicate of the subnet before it.
std::vector<Lease> cluster(size_t n) {
  std::mt19937 rng(7);
  std::vector<Lease> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t slot = (i % 100 == 99) ? i - 1 : i;
    Lease l;
    l.subnet = {Be32::from_host(0x0A000000u + static_cast<uint32_t>((slot + 1) << 8)), 24};
    l.public_ip = Be32::from_host(0xAC100000u + static_cast<uint32_t>(i) + 1);
    l.key = "/coreos.com/network/subnets/10.x.y.0-24#" + std::to_string(i);
    l.created = static_cast<int64_t>(rng() % 1000000);
    out.push_back(l);
  }
  return out;
}

void BM_JudgeLeases(benchmark::State& state) {
  const std::vector<Lease> leases = cluster(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    LeaseVerdicts v = judge_leases(kPolicy, leases);
    benchmark::DoNotOptimize(v);
  }
  state.counters["leases"] = static_cast<double>(leases.size());
}
BENCHMARK(BM_JudgeLeases)->Arg(100)->Arg(1000)->Arg(5000)->Arg(20000)->Unit(benchmark::kMicrosecond);

// PeerRoutes holding N leases (plus ours), and one event to apply.
struct Loaded {
  Qsbr qsbr{1};
  RouteTable table{qsbr};
  PeerRoutes routes;
  std::vector<Lease> leases;
  explicit Loaded(size_t n)
      : routes(table, kPolicy, {Be32::from_host(0x0AFF0000u), 24}, Be32::from_host(0xC6336401u),
               8285),
        leases(cluster(n)) {
    LeaseUpdate u;
    u.reset = true;
    u.leases = leases;
    Lease own;
    own.subnet = {Be32::from_host(0x0AFF0000u), 24};
    own.public_ip = Be32::from_host(0xC6336401u);
    u.leases.push_back(own);
    routes.apply(u);
  }
};

void BM_ApplyRenewal(benchmark::State& state) {
  spdlog::set_level(spdlog::level::off);
  Loaded s(static_cast<size_t>(state.range(0)));
  LeaseUpdate u;
  u.events = {{LeaseEvent::Kind::kAdded, s.leases[s.leases.size() / 2]}};
  for (auto _ : state) {
    ++u.events[0].lease.expiry_unix;
    benchmark::DoNotOptimize(s.routes.apply(u));
  }
}
BENCHMARK(BM_ApplyRenewal)->Arg(100)->Arg(1000)->Arg(5000)->Arg(20000)->Unit(benchmark::kMicrosecond);

void BM_ApplyNextHopChange(benchmark::State& state) {
  spdlog::set_level(spdlog::level::off);
  Loaded s(static_cast<size_t>(state.range(0)));
  LeaseUpdate u;
  u.events = {{LeaseEvent::Kind::kAdded, s.leases[s.leases.size() / 2]}};
  const Be32 a = u.events[0].lease.public_ip;
  const Be32 b = Be32::from_host(0xC0A80002u);
  for (auto _ : state) {
    u.events[0].lease.public_ip = u.events[0].lease.public_ip == a ? b : a;
    benchmark::DoNotOptimize(s.routes.apply(u));
  }
}
BENCHMARK(BM_ApplyNextHopChange)->Arg(100)->Arg(1000)->Arg(5000)->Arg(20000)->Unit(benchmark::kMicrosecond);

void BM_RebuildOnly(benchmark::State& state) {
  Qsbr qsbr{1};
  RouteTable table{qsbr};
  for (const Lease& l : cluster(static_cast<size_t>(state.range(0)))) {
    table.set({l.subnet, {l.public_ip, htons(8285)}});
  }
  for (auto _ : state) table.publish();
}
BENCHMARK(BM_RebuildOnly)->Arg(100)->Arg(1000)->Arg(5000)->Arg(20000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace udpring::core

BENCHMARK_MAIN();
