// Cost of the TCP offload helpers (encap/gso_split.h, encap/coalesce.h), which are bound by
// the RFC 1071 ones'-complement sum over every payload byte they touch:
//
//  - BM_TsoSplit: cut one TSO super-packet (IPv4 20 + TCP 32 bytes with the
//    timestamps option, 65483 payload bytes = the largest IPv4 packet) into
//    segments of MSS bytes. Headers are copied into scratch slots; the payload
//    is not copied but each segment's TCP checksum is computed over it, which
//    dominates. tso_split_v4 only reads the super-packet (it writes the
//    scratch headers and iovecs), so every iteration sees the same input.
//  - BM_Coalesce: plan_coalescing over 44 in-order 1420-byte segments of
//    one flow (one run of 44), verifying each merged segment's checksum.
//  - BM_CoalesceInterleaved: 64 segments of 4 flows interleaved in bursts of
//    N packets, so runs break every N packets (N = 1: no merging at all).
//  - BM_FinishChecksum: completing a NEEDS_CSUM partial checksum.
//  - BM_OnesSum: core::ones_sum alone, the bound for all of the above.
//
// Bytes processed are TCP payload bytes (BM_TsoSplit, BM_Coalesce*) or the
// bytes summed (BM_FinishChecksum: TCP header + payload; BM_OnesSum), so
// bytes_per_second reads as payload GB/s per core. All data is cache-hot: a
// 64 KiB super-packet and a 64-packet batch fit in L2.
//
// The coalescing planner and finish_checksum rewrite header bytes in place;
// those benchmarks restore them at the start of each iteration (a memcpy of
// the 52 header bytes of each rewritten packet, or a 2-byte store) and that
// restore is included in the time.

#include <benchmark/benchmark.h>

#include <array>
#include <cstring>
#include <random>
#include <vector>

#include "core/ipv4.h"
#include "encap/packet_ref.h"
#include "encap/coalesce.h"
#include "encap/gso_split.h"
#include "encap/vnet_hdr.h"

namespace udpring {
namespace {

constexpr size_t kIpBytes = 20;
constexpr size_t kTcpBytes = 32;  // 20 + NOP NOP TIMESTAMP (12)
constexpr size_t kHdrBytes = kIpBytes + kTcpBytes;
constexpr uint8_t kAck = 0x10;
constexpr uint8_t kPsh = 0x08;

void put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v);
}

// Folded sum of the IPv4 TCP pseudo header for `l4_len` bytes of TCP.
uint32_t tcp_pseudo_sum(const uint8_t* ip, size_t l4_len) {
  uint8_t ph[12];
  std::memcpy(ph, ip + 12, 8);
  ph[8] = 0;
  ph[9] = core::kIpProtoTcp;
  put16(ph + 10, static_cast<uint32_t>(l4_len));
  return core::ones_sum(ph, sizeof ph);
}

struct TcpFlow {
  uint32_t src = 0x0A000102;  // 10.0.1.2
  uint32_t dst = 0x0A000203;  // 10.0.2.3
  uint16_t sport = 40000;
  uint16_t dport = 5201;
};

// A TCP/IPv4 packet with `payload` pseudo-random bytes, DF, TTL 64, the
// timestamps option and valid IP and TCP checksums.
std::vector<uint8_t> make_tcp(const TcpFlow& f, uint32_t seq, size_t payload, uint8_t flags,
                              std::mt19937& rng) {
  std::vector<uint8_t> p(kHdrBytes + payload, 0);
  uint8_t* ip = p.data();
  ip[0] = 0x45;
  put16(ip + 2, static_cast<uint32_t>(p.size()));
  put16(ip + 4, 0x4d2);
  ip[6] = 0x40;  // DF
  ip[8] = 64;
  ip[9] = core::kIpProtoTcp;
  put32(ip + 12, f.src);
  put32(ip + 16, f.dst);
  core::ipv4_set_header_checksum(ip);
  uint8_t* tcp = ip + kIpBytes;
  put16(tcp, f.sport);
  put16(tcp + 2, f.dport);
  put32(tcp + 4, seq);
  put32(tcp + 8, 0x1000);  // ACK number
  tcp[12] = static_cast<uint8_t>((kTcpBytes / 4) << 4);
  tcp[13] = flags;
  put16(tcp + 14, 501);  // window
  tcp[20] = 1;           // NOP
  tcp[21] = 1;           // NOP
  tcp[22] = 8;           // TIMESTAMP
  tcp[23] = 10;
  put32(tcp + 24, 0x01020304);
  put32(tcp + 28, 0x05060708);
  for (size_t i = kHdrBytes; i < p.size(); ++i) p[i] = static_cast<uint8_t>(rng());
  const size_t l4 = p.size() - kIpBytes;
  const uint32_t s = core::ones_sum(tcp, l4, tcp_pseudo_sum(ip, l4));
  put16(tcp + 16, ~s & 0xffff);
  return p;
}

void set_per_item_ns(benchmark::State& state, const char* name, size_t items_per_iter) {
  state.counters[name] = benchmark::Counter(static_cast<double>(state.iterations() * items_per_iter),
                                            benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// ---------------------------------------------------------------------------

constexpr size_t kSuperBytes = 65535;  // largest IPv4 total length
constexpr size_t kMaxSegments = 64;

void BM_TsoSplit(benchmark::State& state) {
  const auto mss = static_cast<uint16_t>(state.range(0));
  std::mt19937 rng(1);
  auto super = make_tcp(TcpFlow{}, 1000, kSuperBytes - kHdrBytes, kAck | kPsh, rng);
  const size_t payload = super.size() - kHdrBytes;
  std::vector<uint8_t> scratch(kMaxSegments * encap::kSegHdrSlotBytes);
  std::vector<iovec> iov(2 * kMaxSegments);
  encap::TsoSplit r;
  for (auto _ : state) {
    r = encap::tso_split_v4(super.data(), super.size(), mss, scratch.data(), kMaxSegments, iov.data());
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  const size_t segs = (payload + mss - 1) / mss;
  if (r.status != encap::TsoStatus::kOk || r.segments != segs) {
    state.SkipWithError("tso_split_v4 did not produce the expected segments");
    return;
  }
  // Sanity: the first and the last segment carry a valid TCP checksum.
  for (size_t k : {size_t{0}, segs - 1}) {
    std::vector<uint8_t> seg(static_cast<const uint8_t*>(iov[2 * k].iov_base),
                             static_cast<const uint8_t*>(iov[2 * k].iov_base) + iov[2 * k].iov_len);
    const auto* pl = static_cast<const uint8_t*>(iov[2 * k + 1].iov_base);
    seg.insert(seg.end(), pl, pl + iov[2 * k + 1].iov_len);
    if (!encap::tcp_checksum_ok(seg.data(), seg.size())) {
      state.SkipWithError("segment checksum does not verify");
      return;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload));
  state.counters["segments"] = static_cast<double>(segs);
  set_per_item_ns(state, "ns_per_segment", segs);
}
BENCHMARK(BM_TsoSplit)->ArgName("mss")->Arg(1420)->Arg(1448)->Arg(8948);

// ---------------------------------------------------------------------------

struct CoalesceBatch {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<encap::PacketRef> refs;
  size_t payload_bytes = 0;
  // Packets whose headers the planner rewrites, with their pristine headers.
  std::vector<size_t> rewritten;
  std::vector<std::array<uint8_t, kHdrBytes>> saved;
};

// `n` segments of `flows` flows with `mss`-byte payloads, sent in bursts of
// `burst` consecutive segments per flow, round-robin over the flows.
CoalesceBatch make_coalesce_batch(size_t n, size_t flows, size_t burst, size_t mss) {
  std::mt19937 rng(7);
  std::vector<TcpFlow> fl(flows);
  std::vector<uint32_t> seq(flows);
  for (size_t f = 0; f < flows; ++f) {
    fl[f].sport = static_cast<uint16_t>(40000 + f);
    seq[f] = 100000 * static_cast<uint32_t>(f + 1);
  }
  CoalesceBatch b;
  for (size_t i = 0; i < n; ++i) {
    const size_t f = (i / burst) % flows;
    b.storage.push_back(make_tcp(fl[f], seq[f], mss, kAck, rng));
    seq[f] += static_cast<uint32_t>(mss);
    b.payload_bytes += mss;
  }
  for (auto& p : b.storage) b.refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  return b;
}

// Runs the planner once on a copy to learn which packets it rewrites (the
// first packet of each multi-packet run), so the timed loop restores only those.
size_t prepare_restore(CoalesceBatch& b, std::vector<encap::CoalescedRun>& runs) {
  std::vector<std::array<uint8_t, kHdrBytes>> pristine(b.refs.size());
  for (size_t i = 0; i < b.refs.size(); ++i) std::memcpy(pristine[i].data(), b.refs[i].data, kHdrBytes);
  const size_t n = encap::plan_coalescing(b.refs, kMaxSegments, runs).runs;
  for (size_t r = 0; r < n; ++r) {
    if (runs[r].count > 1) {
      b.rewritten.push_back(runs[r].first);
      b.saved.push_back(pristine[runs[r].first]);
    }
  }
  for (size_t i = 0; i < b.refs.size(); ++i) std::memcpy(b.refs[i].data, pristine[i].data(), kHdrBytes);
  return n;
}

void run_coalesce(benchmark::State& state, CoalesceBatch& b, size_t want_runs) {
  std::vector<encap::CoalescedRun> runs(b.refs.size());
  if (prepare_restore(b, runs) != want_runs) {
    state.SkipWithError("unexpected number of runs");
    return;
  }
  size_t n = 0;
  for (auto _ : state) {
    for (size_t k = 0; k < b.rewritten.size(); ++k) {
      std::memcpy(b.refs[b.rewritten[k]].data, b.saved[k].data(), kHdrBytes);
    }
    n = encap::plan_coalescing(b.refs, kMaxSegments, runs).runs;
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  if (n != want_runs) {
    state.SkipWithError("runs changed between iterations");
    return;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * b.payload_bytes));
  state.counters["runs"] = static_cast<double>(n);
  set_per_item_ns(state, "ns_per_packet", b.refs.size());
}

void BM_Coalesce(benchmark::State& state) {
  constexpr size_t kSegs = 44;  // 44 * 1420 + 52 <= 65535
  auto b = make_coalesce_batch(kSegs, 1, kSegs, 1420);
  run_coalesce(state, b, 1);
}
BENCHMARK(BM_Coalesce);

void BM_CoalesceInterleaved(benchmark::State& state) {
  constexpr size_t kSegs = 64;
  constexpr size_t kFlows = 4;
  const auto burst = static_cast<size_t>(state.range(0));
  auto b = make_coalesce_batch(kSegs, kFlows, burst, 1420);
  run_coalesce(state, b, kSegs / burst);
}
BENCHMARK(BM_CoalesceInterleaved)->ArgName("burst")->Arg(1)->Arg(4);

// ---------------------------------------------------------------------------

void BM_FinishChecksum(benchmark::State& state) {
  const auto len = static_cast<size_t>(state.range(0));
  std::mt19937 rng(3);
  auto p = make_tcp(TcpFlow{}, 1, len - kHdrBytes, kAck, rng);
  // What the kernel hands over with NEEDS_CSUM: the pseudo-header sum.
  const uint32_t seed = tcp_pseudo_sum(p.data(), len - kIpBytes);
  uint8_t* field = p.data() + kIpBytes + 16;
  for (auto _ : state) {
    put16(field, seed);
    benchmark::DoNotOptimize(encap::finish_checksum(p.data(), p.size(), kIpBytes, 16));
    benchmark::ClobberMemory();
  }
  if (!encap::tcp_checksum_ok(p.data(), p.size())) {
    state.SkipWithError("finished checksum does not verify");
    return;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * (len - kIpBytes)));
  set_per_item_ns(state, "ns_per_packet", 1);
}
BENCHMARK(BM_FinishChecksum)->ArgName("len")->Arg(64)->Arg(1472);

// ---------------------------------------------------------------------------

void BM_OnesSum(benchmark::State& state) {
  std::mt19937 rng(4);
  std::vector<uint8_t> data(static_cast<size_t>(state.range(0)));
  for (auto& v : data) v = static_cast<uint8_t>(rng());
  const uint8_t* ptr = data.data();
  for (auto _ : state) {
    benchmark::DoNotOptimize(ptr);
    benchmark::DoNotOptimize(core::ones_sum(ptr, data.size()));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_OnesSum)->ArgName("bytes")->Arg(1420)->Arg(65536);

}  // namespace
}  // namespace udpring

BENCHMARK_MAIN();
