// Per-packet cost of the pure pipeline stages on a batch of 64 packets, with
// no syscalls: encapsulate (validate, LPM lookup, TTL) and decapsulate
// (peer check, validate, TTL), plus the ICMP builder and the checksum.
//
// Each iteration restores the TTLs first (the stages decrement them in
// place); that restore is a store per packet and is included in the time.

#include <arpa/inet.h>
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "core/ipv4.h"
#include "core/route_table.h"
#include "encap/icmp.h"
#include "encap/udp_decap.h"
#include "encap/udp_encap.h"

namespace udpring {
namespace {

constexpr size_t kBatch = 64;

// A cluster of `nodes` /24 leases in 10.0.0.0/8, next hops 192.168.x.y.
std::vector<core::Route> cluster(size_t nodes) {
  std::vector<core::Route> routes;
  for (size_t i = 0; i < nodes; ++i) {
    const uint32_t net = 0x0A000000u | static_cast<uint32_t>((i + 1) << 8);
    routes.push_back({{core::Be32::from_host(net), 24},
                      {core::Be32::from_host(0xC0A80000u | static_cast<uint32_t>(i + 1)), htons(8285)}});
  }
  return routes;
}

struct Batch {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<encap::PacketRef> refs;
  std::vector<core::Be32> srcs;
};

Batch make_batch(size_t nodes, size_t payload, uint32_t seed) {
  std::mt19937 rng(seed);
  Batch b;
  for (size_t i = 0; i < kBatch; ++i) {
    std::vector<uint8_t> p(20 + payload, 0);
    p[0] = 0x45;
    p[2] = static_cast<uint8_t>((20 + payload) >> 8);
    p[3] = static_cast<uint8_t>(20 + payload);
    p[8] = 64;
    p[9] = 6;
    const uint32_t node = 1 + rng() % nodes;
    const uint32_t src = 0x0A000002u;
    const uint32_t dst = 0x0A000000u | (node << 8) | 7;
    const uint32_t s = htonl(src), d = htonl(dst);
    std::memcpy(&p[12], &s, 4);
    std::memcpy(&p[16], &d, 4);
    core::ipv4_set_header_checksum(p.data());
    b.storage.push_back(std::move(p));
    b.srcs.push_back(core::Be32::from_host(0xC0A80000u | node));
  }
  for (auto& p : b.storage) b.refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  return b;
}

void BM_EncapBatch64(benchmark::State& state) {
  const auto nodes = static_cast<size_t>(state.range(0));
  auto snap = core::RouteSnapshot::build(cluster(nodes));
  Batch b = make_batch(nodes, 1400, 1);
  std::vector<encap::EncapResult> out(kBatch);
  for (auto _ : state) {
    for (auto& r : b.refs) r.data[8] = 64;
    benchmark::DoNotOptimize(encap::encapsulate_batch(b.refs, *snap, out));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.counters["ns_per_packet"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kBatch),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_EncapBatch64)->Arg(2)->Arg(256)->Arg(5000);

// Datagrams as peers send them: from a random peer's pod (10.0.node.7,
// outer source 192.168.0.node) to a pod of ours in 10.0.0.0/24, so every
// packet passes each --peer-check mode and the loop measures the check.
Batch make_inbound_batch(size_t nodes, size_t payload, uint32_t seed) {
  Batch b = make_batch(nodes, payload, seed);
  for (size_t i = 0; i < kBatch; ++i) {
    uint8_t* p = b.refs[i].data;
    const uint32_t node = core::Ipv4View(p).dst().host() >> 8 & 0xffff;
    const uint32_t s = htonl(0x0A000007u | node << 8), d = htonl(0x0A000007u);
    std::memcpy(p + 12, &s, 4);
    std::memcpy(p + 16, &d, 4);
    core::ipv4_set_header_checksum(p);
    b.srcs[i] = core::Be32::from_host(0xC0A80000u | node);
  }
  return b;
}

// Args: peers in the route table, --peer-check mode (0 off, 1 peer, 2 strict).
void BM_DecapBatch64(benchmark::State& state) {
  const auto nodes = static_cast<size_t>(state.range(0));
  const encap::DecapPolicy policy{static_cast<encap::PeerCheck>(state.range(1)),
                                  {core::Be32::from_host(0x0A000000u), 24}};
  auto snap = core::RouteSnapshot::build(cluster(nodes));
  Batch b = make_inbound_batch(nodes, 1400, 2);
  std::vector<encap::DecapInput> in;
  for (size_t i = 0; i < kBatch; ++i) in.push_back({b.refs[i], b.srcs[i]});
  std::vector<encap::DecapVerdict> out(kBatch);
  if (encap::decapsulate_batch(in, *snap, policy, out) != kBatch) {
    state.SkipWithError("a datagram failed the policy: the batch is wrong");
    return;
  }
  for (auto _ : state) {
    for (auto& d : in) d.pkt.data[8] = 64;
    benchmark::DoNotOptimize(encap::decapsulate_batch(in, *snap, policy, out));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  state.counters["ns_per_packet"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kBatch),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_DecapBatch64)->ArgsProduct({{2, 256, 5000}, {0, 1, 2}});

void BM_NetUnreachable(benchmark::State& state) {
  Batch b = make_batch(2, 100, 3);
  uint8_t out[encap::kIcmpUnreachMaxBytes];
  for (auto _ : state) {
    benchmark::DoNotOptimize(encap::build_net_unreachable(b.refs[0].data, b.refs[0].len,
                                                          core::Be32::from_host(0x0A000100u), out));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_NetUnreachable);

void BM_Checksum(benchmark::State& state) {
  std::vector<uint8_t> data(static_cast<size_t>(state.range(0)), 0x5a);
  for (auto _ : state) benchmark::DoNotOptimize(core::internet_checksum(data.data(), data.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_Checksum)->Arg(20)->Arg(1500)->Arg(65536);

}  // namespace
}  // namespace udpring

BENCHMARK_MAIN();
