#include "encap/coalesce.h"

#include "encap/vnet_hdr.h"

#include <gtest/gtest.h>

#include "tests/support/offload_packets.h"

namespace udpring {
namespace {

using encap::CoalescedRun;
using encap::PacketRef;
using encap::TsoStatus;
using test::kAck;
using test::kPsh;
using test::PacketBuilder;
using test::Split;
using test::split;
using test::tcp_packet;
using test::udp_packet;

std::vector<CoalescedRun> plan(std::vector<std::vector<uint8_t>>& pkts, uint32_t max_run = 64) {
  std::vector<PacketRef> refs;
  for (auto& p : pkts) refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  std::vector<CoalescedRun> runs(refs.size());
  runs.resize(encap::plan_coalescing(refs, max_run, runs).runs);
  return runs;
}

// What the TUN receives for a run: first packet, then the others' payloads.
std::vector<uint8_t> assemble(const std::vector<std::vector<uint8_t>>& pkts, const CoalescedRun& r) {
  std::vector<uint8_t> out = pkts[r.first];
  for (uint32_t k = 1; k < r.count; ++k) {
    const auto& p = pkts[r.first + k];
    out.insert(out.end(), p.begin() + static_cast<long>(r.payload_offset()), p.end());
  }
  return out;
}

TEST(Coalesce, MergesAStreamIntoOneGsoPacket) {
  const auto data = test::random_bytes(5 * 1400 + 300, 5);
  std::vector<std::vector<uint8_t>> pkts;
  for (size_t off = 0; off < data.size(); off += 1400) {
    const size_t n = std::min<size_t>(1400, data.size() - off);
    const bool last = off + n == data.size();
    pkts.push_back(tcp_packet(static_cast<uint32_t>(5000 + off),
                              {data.begin() + static_cast<long>(off), data.begin() + static_cast<long>(off + n)},
                              last ? kAck | kPsh : kAck));
  }
  const auto runs = plan(pkts);
  ASSERT_EQ(runs.size(), 1u);
  const CoalescedRun& r = runs[0];
  EXPECT_EQ(r.count, 6u);
  EXPECT_EQ(r.vnet.flags, encap::kVnetFlagNeedsCsum);
  EXPECT_EQ(r.vnet.gso_type, encap::kVnetGsoTcpV4);
  EXPECT_EQ(r.vnet.gso_size, 1400);
  EXPECT_EQ(r.vnet.hdr_len, 52);
  EXPECT_EQ(r.payload_offset(), 52u) << "IPv4 20 + TCP 20 + 12 bytes of options";
  EXPECT_EQ(r.vnet.csum_start, 20);
  EXPECT_EQ(r.vnet.csum_offset, 16);
  auto merged = assemble(pkts, r);
  EXPECT_EQ(core::validate_ipv4(merged.data(), merged.size()), core::Ipv4Error::kOk);
  EXPECT_TRUE(test::header_checksum_ok(merged));
  EXPECT_TRUE(merged[33] & kPsh) << "PSH of the last segment carried over";
  // Completing the partial checksum as the kernel would gives a valid packet.
  ASSERT_TRUE(encap::finish_checksum(merged.data(), merged.size(), 20, 16));
  EXPECT_TRUE(encap::tcp_checksum_ok(merged.data(), merged.size()));
  EXPECT_TRUE(std::equal(data.begin(), data.end(), merged.begin() + 52));
}

TEST(Coalesce, SplitThenCoalesceRoundTrips) {
  const auto data = test::random_bytes(30000, 6);
  auto super = tcp_packet(42, data);
  Split s = split(super, 1400);
  ASSERT_EQ(s.r.status, TsoStatus::kOk);
  auto runs = plan(s.segments);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].count, s.r.segments);
  auto merged = assemble(s.segments, runs[0]);
  ASSERT_TRUE(encap::finish_checksum(merged.data(), merged.size(), 20, 16));
  EXPECT_TRUE(encap::tcp_checksum_ok(merged.data(), merged.size()));
  EXPECT_TRUE(std::equal(data.begin(), data.end(), merged.begin() + 52));
}

TEST(Coalesce, KeepsApartWhatMustNotMerge) {
  auto seg = [](uint32_t seq, uint8_t flags = kAck, uint32_t ack = 777, size_t n = 1000) {
    return tcp_packet(seq, test::random_bytes(n, seq), flags, ack);
  };
  struct Case {
    const char* name;
    std::vector<std::vector<uint8_t>> pkts;
    std::vector<uint32_t> counts;
  };
  std::vector<Case> cases = {
      {"different_ack", {seg(0), seg(1000, kAck, 778)}, {1, 1}},
      {"seq_gap", {seg(0), seg(1001)}, {1, 1}},
      {"psh_in_the_middle_ends_run", {seg(0), seg(1000, kAck | kPsh), seg(2000)}, {2, 1}},
      {"syn_is_never_merged", {seg(0, 0x02), seg(1000)}, {1, 1}},
      {"short_one_ends_run", {seg(0), seg(1000, kAck, 777, 500), seg(1500)}, {2, 1}},
      {"larger_follower", {seg(0, kAck, 777, 500), seg(500)}, {1, 1}},
      {"udp_is_left_alone", {PacketBuilder().build(), PacketBuilder().build()}, {1, 1}},
  };
  auto bad = seg(1000);
  bad[60] ^= 0xff;  // corrupt payload: checksum no longer verifies
  {
    std::vector<std::vector<uint8_t>> two = {seg(0), bad};
    std::vector<PacketRef> refs;
    for (auto& p : two) refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
    std::vector<CoalescedRun> r(2);
    EXPECT_EQ(encap::plan_coalescing(refs, 64, r).checksum_failures, 1u);
  }
  cases.push_back({"bad_checksum", {seg(0), bad}, {1, 1}});
  auto other_ttl = tcp_packet(1000, test::random_bytes(1000, 1000), kAck, 777, 12, 9);
  cases.push_back({"different_ttl", {seg(0), other_ttl}, {1, 1}});
  for (auto& c : cases) {
    const auto before = c.pkts;
    const auto runs = plan(c.pkts);
    std::vector<uint32_t> counts;
    for (const auto& r : runs) counts.push_back(r.count);
    EXPECT_EQ(counts, c.counts) << c.name;
    for (const auto& r : runs) {
      if (r.count == 1) {
        EXPECT_EQ(r.vnet.gso_type, encap::kVnetGsoNone) << c.name;
        EXPECT_EQ(c.pkts[r.first], before[r.first]) << c.name << ": single packet was modified";
      }
    }
  }
}

TEST(Coalesce, RespectsTheRunLimitAndTotalLength) {
  std::vector<std::vector<uint8_t>> pkts;
  for (uint32_t k = 0; k < 10; ++k) pkts.push_back(tcp_packet(k * 100, test::random_bytes(100, k)));
  const auto runs = plan(pkts, 4);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].count, 4u);
  EXPECT_EQ(runs[2].count, 2u);
  std::vector<std::vector<uint8_t>> big;
  for (uint32_t k = 0; k < 50; ++k) big.push_back(tcp_packet(k * 1400, test::random_bytes(1400, k)));
  const auto big_runs = plan(big);
  size_t total = 0;
  for (const auto& r : big_runs) {
    EXPECT_LE(assemble(big, r).size(), 65535u);
    total += r.count;
  }
  EXPECT_EQ(total, 50u);
  EXPECT_GE(big_runs.size(), 2u);
}

std::vector<CoalescedRun> plan_udp(std::vector<std::vector<uint8_t>>& pkts, size_t* failures = nullptr) {
  std::vector<PacketRef> refs;
  for (auto& p : pkts) refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  std::vector<CoalescedRun> runs(refs.size());
  const auto plan = encap::plan_coalescing(refs, 64, runs, true);
  runs.resize(plan.runs);
  if (failures) *failures = plan.checksum_failures;
  return runs;
}

TEST(UdpCoalesce, MergesOneFlowIntoAUdpL4GsoPacket) {
  std::vector<std::vector<uint8_t>> pkts;
  std::vector<uint8_t> all;
  for (int k = 0; k < 6; ++k) {
    auto d = test::random_bytes(k == 5 ? 300 : 1000, 100 + k);
    all.insert(all.end(), d.begin(), d.end());
    pkts.push_back(udp_packet(d));
  }
  const auto runs = plan_udp(pkts);
  ASSERT_EQ(runs.size(), 1u);
  const CoalescedRun& r = runs[0];
  EXPECT_EQ(r.count, 6u);
  EXPECT_EQ(r.vnet.gso_type, encap::kVnetGsoUdpL4);
  EXPECT_EQ(r.vnet.gso_size, 1000);
  EXPECT_EQ(r.vnet.hdr_len, 28);
  EXPECT_EQ(r.payload_offset(), 28u) << "IPv4 20 + UDP 8";
  EXPECT_EQ(r.vnet.csum_offset, 6);
  std::vector<uint8_t> merged = assemble(pkts, r);
  EXPECT_EQ(core::validate_ipv4(merged.data(), merged.size()), core::Ipv4Error::kOk);
  EXPECT_TRUE(test::header_checksum_ok(merged));
  EXPECT_EQ(((merged[24] << 8) | merged[25]), static_cast<int>(merged.size() - 20));
  ASSERT_TRUE(encap::finish_checksum(merged.data(), merged.size(), 20, 6));
  EXPECT_TRUE(encap::udp_checksum_ok(merged.data(), merged.size()));
  EXPECT_TRUE(std::equal(all.begin(), all.end(), merged.begin() + 28));
}

TEST(UdpCoalesce, KeepsFlowsAndBadPacketsApart) {
  std::vector<std::vector<uint8_t>> flows = {udp_packet(test::random_bytes(500, 1), 4000), udp_packet(test::random_bytes(500, 2), 4001)};
  EXPECT_EQ(plan_udp(flows).size(), 2u) << "different source ports";
  std::vector<std::vector<uint8_t>> zero = {udp_packet(test::random_bytes(500, 1), 4000, true),
                                            udp_packet(test::random_bytes(500, 2), 4000, true)};
  EXPECT_EQ(plan_udp(zero).size(), 1u) << "packets without a checksum still merge";
  auto bad = udp_packet(test::random_bytes(500, 2));
  bad[40] ^= 1;
  std::vector<std::vector<uint8_t>> corrupt = {udp_packet(test::random_bytes(500, 1)), bad};
  size_t failures = 0;
  EXPECT_EQ(plan_udp(corrupt, &failures).size(), 2u);
  EXPECT_EQ(failures, 1u);
  std::vector<std::vector<uint8_t>> off = {udp_packet(test::random_bytes(500, 1)), udp_packet(test::random_bytes(500, 2))};
  std::vector<PacketRef> refs;
  for (auto& p : off) refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  std::vector<CoalescedRun> runs(2);
  EXPECT_EQ(encap::plan_coalescing(refs, 64, runs, false).runs, 2u) << "UDP only when asked";
}

// Segments whose bytes an outer UDP checksum already vouched for are merged
// without being summed; the same segments without that mark are summed and
// the corrupt one is kept apart. Only the mark differs between the two plans.
TEST(Coalesce, OuterVerifiedSegmentsAreNotSummedAgain) {
  auto run_with_bad_second = [](bool udp) {
    std::vector<std::vector<uint8_t>> pkts;
    if (udp) {
      pkts = {udp_packet(test::random_bytes(500, 1)), udp_packet(test::random_bytes(500, 2)), udp_packet(test::random_bytes(500, 3))};
      pkts[1][40] ^= 1;
    } else {
      pkts = {tcp_packet(0, test::random_bytes(1000, 0)), tcp_packet(1000, test::random_bytes(1000, 1)), tcp_packet(2000, test::random_bytes(1000, 2))};
      pkts[1][60] ^= 0xff;
    }
    return pkts;
  };
  for (bool udp : {false, true}) {
    for (bool marked : {false, true}) {
      auto pkts = run_with_bad_second(udp);
      std::vector<PacketRef> refs;
      for (auto& p : pkts) refs.push_back({p.data(), static_cast<uint32_t>(p.size()), marked});
      std::vector<CoalescedRun> runs(refs.size());
      const auto plan = encap::plan_coalescing(refs, 64, runs, udp);
      if (marked) {
        EXPECT_EQ(plan.runs, 1u) << "udp=" << udp;
        EXPECT_EQ(runs[0].count, 3u) << "udp=" << udp;
        EXPECT_EQ(plan.checksum_failures, 0u) << "udp=" << udp;
      } else {
        EXPECT_GE(plan.runs, 2u) << "udp=" << udp;
        EXPECT_EQ(runs[0].count, 1u) << "udp=" << udp;
        EXPECT_GE(plan.checksum_failures, 1u) << "udp=" << udp;
      }
    }
  }
}


}  // namespace
}  // namespace udpring
