#include "encap/tcp_offload.h"

#include <gtest/gtest.h>


#include "tests/support/packet_builder.h"

namespace udpring {
namespace {

using encap::CoalescedRun;
using encap::PacketRef;
using encap::TsoStatus;
using test::PacketBuilder;

constexpr uint8_t kAck = 0x10, kPsh = 0x08, kFin = 0x01, kCwr = 0x80;

uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// A TCP/IPv4 packet with a correct TCP checksum.
std::vector<uint8_t> tcp_packet(uint32_t seq, const std::vector<uint8_t>& data, uint8_t flags = kAck,
                                uint32_t ack = 777, size_t opt_bytes = 12, uint8_t ttl = 64) {
  std::vector<uint8_t> tcp(20 + opt_bytes, 0);
  tcp[0] = 0x30; tcp[1] = 0x39;  // 12345
  tcp[2] = 0x13; tcp[3] = 0x89;  // 5001
  for (int b = 0; b < 4; ++b) tcp[4 + b] = static_cast<uint8_t>(seq >> (24 - 8 * b));
  for (int b = 0; b < 4; ++b) tcp[8 + b] = static_cast<uint8_t>(ack >> (24 - 8 * b));
  tcp[12] = static_cast<uint8_t>(((20 + opt_bytes) / 4) << 4);
  tcp[13] = flags;
  tcp[14] = 0xff;
  for (size_t o = 0; o < opt_bytes; ++o) tcp[20 + o] = o % 4 == 0 ? 1 : static_cast<uint8_t>(o);
  tcp.insert(tcp.end(), data.begin(), data.end());
  auto p = PacketBuilder().protocol(core::kIpProtoTcp).ttl(ttl).payload(tcp).build();
  // TCP checksum over pseudo header + segment.
  std::vector<uint8_t> pseudo(p.begin() + 12, p.begin() + 20);
  pseudo.push_back(0);
  pseudo.push_back(6);
  pseudo.push_back(static_cast<uint8_t>(tcp.size() >> 8));
  pseudo.push_back(static_cast<uint8_t>(tcp.size()));
  const uint32_t s = core::ones_sum(p.data() + 20, tcp.size(), core::ones_sum(pseudo.data(), 12));
  p[36] = static_cast<uint8_t>(~s >> 8);
  p[37] = static_cast<uint8_t>(~s);
  return p;
}

TEST(FinishChecksum, CompletesAPartialTcpChecksum) {
  auto p = tcp_packet(1, test::random_bytes(333, 1));
  ASSERT_TRUE(encap::tcp_checksum_ok(p.data(), p.size()));
  const auto good = p;
  // What the kernel hands over with NEEDS_CSUM: the pseudo-header sum.
  std::vector<uint8_t> pseudo(p.begin() + 12, p.begin() + 20);
  const size_t l4 = p.size() - 20;
  pseudo.insert(pseudo.end(), {0, 6, static_cast<uint8_t>(l4 >> 8), static_cast<uint8_t>(l4)});
  const uint32_t ps = core::ones_sum(pseudo.data(), 12);
  p[36] = static_cast<uint8_t>(ps >> 8);
  p[37] = static_cast<uint8_t>(ps);
  ASSERT_TRUE(encap::finish_checksum(p.data(), p.size(), 20, 16));
  EXPECT_EQ(p, good);
  EXPECT_FALSE(encap::finish_checksum(p.data(), p.size(), static_cast<uint16_t>(p.size() - 1), 16));
}

struct Split {
  std::vector<uint8_t> scratch;
  std::vector<iovec> iov;
  encap::TsoSplit r;
  std::vector<std::vector<uint8_t>> segments;  // headers + payload, flattened
};

Split split(std::vector<uint8_t>& super, uint16_t mss, size_t max = 64) {
  Split s;
  s.scratch.resize(max * encap::kSegHdrSlotBytes);
  s.iov.resize(2 * max);
  s.r = encap::tso_split_v4(super.data(), super.size(), mss, s.scratch.data(), max, s.iov.data());
  for (uint32_t k = 0; k < s.r.segments; ++k) {
    std::vector<uint8_t> seg;
    for (int part = 0; part < 2; ++part) {
      const auto* b = static_cast<const uint8_t*>(s.iov[2 * k + part].iov_base);
      seg.insert(seg.end(), b, b + s.iov[2 * k + part].iov_len);
    }
    s.segments.push_back(seg);
  }
  return s;
}

TEST(TsoSplit, SegmentsAreValidAndReassembleTheStream) {
  const auto data = test::random_bytes(10000, 2);
  auto super = tcp_packet(1000, data, kAck | kPsh | kFin | kCwr);
  const uint16_t mss = 1408;
  Split s = split(super, mss);
  ASSERT_EQ(s.r.status, TsoStatus::kOk);
  ASSERT_EQ(s.r.segments, 8u);  // ceil(10000 / 1408)
  EXPECT_EQ(s.r.seg_bytes, 20u + 32 + mss);
  std::vector<uint8_t> joined;
  for (uint32_t k = 0; k < s.r.segments; ++k) {
    const auto& seg = s.segments[k];
    const size_t want = k + 1 < s.r.segments ? mss : 10000 - 7 * mss;
    ASSERT_EQ(seg.size(), 52 + want) << k;
    EXPECT_EQ(core::validate_ipv4(seg.data(), seg.size()), core::Ipv4Error::kOk) << k;
    EXPECT_TRUE(test::header_checksum_ok(seg)) << k;
    EXPECT_TRUE(encap::tcp_checksum_ok(seg.data(), seg.size())) << k;
    EXPECT_EQ(seg[8], 63) << "TTL - 1 on every segment";
    EXPECT_EQ(load32(seg.data() + 24), 1000 + k * mss);
    EXPECT_EQ(((seg[4] << 8) | seg[5]), 0x1234 + static_cast<int>(k));
    const uint8_t f = seg[33];
    EXPECT_EQ((f & (kFin | kPsh)) != 0, k + 1 == s.r.segments) << k;
    EXPECT_EQ((f & kCwr) != 0, k == 0) << k;
    EXPECT_TRUE(f & kAck);
    EXPECT_TRUE(std::equal(seg.begin() + 40, seg.begin() + 52, super.begin() + 40)) << "options kept";
    joined.insert(joined.end(), seg.begin() + 52, seg.end());
  }
  EXPECT_EQ(joined, data);
  // The payload was not copied: the iovecs point into the super-packet.
  EXPECT_EQ(s.iov[1].iov_base, super.data() + 52);
}

// The checksums are finished from sums of the original header plus the
// fields that change per segment, never from the rewritten bytes: every
// header shape (IP options, long TCP options, which take the variable-size
// header copy) and every wrap-around must still give verifying segments. The
// input's checksum fields hold garbage, as a NEEDS_CSUM super-packet's do.
TEST(TsoSplit, ChecksumsHoldForEveryHeaderShapeAndWrapAround) {
  const auto data = test::random_bytes(5000, 11);
  for (size_t ip_opts : {0u, 8u, 40u}) {
    for (size_t tcp_opts : {0u, 12u, 40u}) {
      for (uint32_t seq0 : {1000u, 0xfffffc00u}) {
        for (uint16_t id0 : {uint16_t{0x1234}, uint16_t{0xfffe}}) {
          for (uint8_t ttl : {uint8_t{2}, uint8_t{255}}) {
            std::vector<uint8_t> tcp(20 + tcp_opts, 0);
            tcp[0] = 0x30; tcp[1] = 0x39;
            tcp[2] = 0x13; tcp[3] = 0x89;
            for (int b = 0; b < 4; ++b) tcp[4 + b] = static_cast<uint8_t>(seq0 >> (24 - 8 * b));
            tcp[8] = 0xab; tcp[11] = 0xcd;
            tcp[12] = static_cast<uint8_t>(((20 + tcp_opts) / 4) << 4);
            tcp[13] = kAck | kPsh;
            tcp[14] = 0x7f; tcp[15] = 0xee;
            tcp[16] = 0x5a; tcp[17] = 0xa5;  // not a checksum of anything
            for (size_t o = 0; o < tcp_opts; ++o) tcp[20 + o] = static_cast<uint8_t>(1 + o);
            tcp.insert(tcp.end(), data.begin(), data.end());
            std::vector<uint8_t> opts(ip_opts, 1);  // NOPs
            auto super = PacketBuilder().protocol(core::kIpProtoTcp).options(opts).id(id0).ttl(ttl)
                             .payload(tcp).build();
            super[10] ^= 0x55;  // nor is the IP header checksum
            const size_t ihl = 20 + ip_opts, hdrs = ihl + 20 + tcp_opts;
            for (uint16_t mss : {uint16_t{536}, uint16_t{1420}}) {
              const std::string where = "ip_opts " + std::to_string(ip_opts) + " tcp_opts " +
                                        std::to_string(tcp_opts) + " seq0 " + std::to_string(seq0) +
                                        " id0 " + std::to_string(id0) + " ttl " +
                                        std::to_string(ttl) + " mss " + std::to_string(mss);
              Split s = split(super, mss);
              ASSERT_EQ(s.r.status, TsoStatus::kOk) << where;
              ASSERT_EQ(s.r.segments, (5000u + mss - 1) / mss) << where;
              std::vector<uint8_t> joined;
              for (uint32_t k = 0; k < s.r.segments; ++k) {
                const auto& seg = s.segments[k];
                ASSERT_EQ(core::validate_ipv4(seg.data(), seg.size()), core::Ipv4Error::kOk) << where;
                EXPECT_TRUE(test::header_checksum_ok(seg)) << where << " segment " << k;
                EXPECT_TRUE(encap::tcp_checksum_ok(seg.data(), seg.size())) << where << " segment " << k;
                EXPECT_EQ(seg[8], ttl - 1) << where;
                EXPECT_EQ(((seg[4] << 8) | seg[5]), static_cast<uint16_t>(id0 + k)) << where;
                EXPECT_EQ(load32(seg.data() + ihl + 4), seq0 + k * mss) << where;
                joined.insert(joined.end(), seg.begin() + static_cast<long>(hdrs), seg.end());
              }
              EXPECT_EQ(joined, data) << where;
            }
          }
        }
      }
    }
  }
}

TEST(TsoSplit, RejectsWhatItCannotCut) {
  auto udp = PacketBuilder().payload_bytes(3000).build();
  EXPECT_EQ(split(udp, 1400).r.status, TsoStatus::kMalformed);
  auto tcp = tcp_packet(1, test::random_bytes(3000, 3));
  EXPECT_EQ(split(tcp, 0).r.status, TsoStatus::kMalformed);
  EXPECT_EQ(split(tcp, 100, 4).r.status, TsoStatus::kTooManySegments);
  auto expiring = tcp_packet(1, test::random_bytes(3000, 3), kAck, 777, 12, 1);
  EXPECT_EQ(split(expiring, 1400).r.status, TsoStatus::kTtlExpired);
  auto header_only = tcp_packet(1, {});
  EXPECT_EQ(split(header_only, 1400).r.status, TsoStatus::kMalformed);
  auto cut = tcp_packet(1, test::random_bytes(10, 4));
  cut[32] = 0xf0;  // data offset 60 bytes: beyond the packet
  EXPECT_EQ(split(cut, 50).r.status, TsoStatus::kMalformed);
}

std::vector<CoalescedRun> plan(std::vector<std::vector<uint8_t>>& pkts, uint32_t max_run = 64) {
  std::vector<PacketRef> refs;
  for (auto& p : pkts) refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  std::vector<CoalescedRun> runs(refs.size());
  runs.resize(encap::plan_tcp_coalescing(refs, max_run, runs).runs);
  return runs;
}

// What the TUN receives for a run: first packet, then the others' payloads.
std::vector<uint8_t> assemble(const std::vector<std::vector<uint8_t>>& pkts, const CoalescedRun& r) {
  std::vector<uint8_t> out = pkts[r.first];
  for (uint32_t k = 1; k < r.count; ++k) {
    const auto& p = pkts[r.first + k];
    const size_t hdrs = 20 + (p[32] >> 4) * 4;
    out.insert(out.end(), p.begin() + static_cast<long>(hdrs), p.end());
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
    EXPECT_EQ(encap::plan_tcp_coalescing(refs, 64, r).checksum_failures, 1u);
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

// A UDP/IPv4 packet with a correct UDP checksum (or none, with `zero_csum`).
std::vector<uint8_t> udp_packet(const std::vector<uint8_t>& data, uint16_t sport = 4000,
                                bool zero_csum = false) {
  std::vector<uint8_t> udp(8, 0);
  udp[0] = static_cast<uint8_t>(sport >> 8);
  udp[1] = static_cast<uint8_t>(sport);
  udp[2] = 0x13; udp[3] = 0x88;  // 5000
  const size_t l4 = 8 + data.size();
  udp[4] = static_cast<uint8_t>(l4 >> 8);
  udp[5] = static_cast<uint8_t>(l4);
  udp.insert(udp.end(), data.begin(), data.end());
  auto p = PacketBuilder().protocol(core::kIpProtoUdp).payload(udp).build();
  if (!zero_csum) {
    std::vector<uint8_t> pseudo(p.begin() + 12, p.begin() + 20);
    pseudo.insert(pseudo.end(), {0, 17, static_cast<uint8_t>(l4 >> 8), static_cast<uint8_t>(l4)});
    uint16_t c = static_cast<uint16_t>(~core::ones_sum(p.data() + 20, l4, core::ones_sum(pseudo.data(), 12)));
    if (c == 0) c = 0xffff;
    p[26] = static_cast<uint8_t>(c >> 8);
    p[27] = static_cast<uint8_t>(c);
  }
  return p;
}

TEST(UsoSplit, SegmentsAreValidUdpDatagrams) {
  const auto data = test::random_bytes(5000, 9);
  auto super = udp_packet(data);
  std::vector<uint8_t> scratch(64 * encap::kSegHdrSlotBytes);
  std::vector<iovec> iov(128);
  const auto r = encap::uso_split_v4(super.data(), super.size(), 1200, scratch.data(), 64, iov.data());
  ASSERT_EQ(r.status, TsoStatus::kOk);
  ASSERT_EQ(r.segments, 5u);
  EXPECT_EQ(r.seg_bytes, 28u + 1200);
  std::vector<uint8_t> joined;
  for (uint32_t k = 0; k < r.segments; ++k) {
    std::vector<uint8_t> seg;
    for (int part = 0; part < 2; ++part) {
      const auto* b = static_cast<const uint8_t*>(iov[2 * k + part].iov_base);
      seg.insert(seg.end(), b, b + iov[2 * k + part].iov_len);
    }
    EXPECT_EQ(core::validate_ipv4(seg.data(), seg.size()), core::Ipv4Error::kOk);
    EXPECT_TRUE(test::header_checksum_ok(seg));
    EXPECT_EQ(((seg[24] << 8) | seg[25]), static_cast<int>(seg.size() - 20)) << "UDP length";
    EXPECT_FALSE(seg[26] == 0 && seg[27] == 0);
    EXPECT_TRUE(encap::udp_checksum_ok(seg.data(), seg.size())) << k;
    EXPECT_EQ(seg[8], 63);
    joined.insert(joined.end(), seg.begin() + 28, seg.end());
  }
  EXPECT_EQ(joined, data);
  auto tcp = tcp_packet(1, test::random_bytes(3000, 3));
  EXPECT_EQ(encap::uso_split_v4(tcp.data(), tcp.size(), 1200, scratch.data(), 64, iov.data()).status,
            TsoStatus::kMalformed);
}

std::vector<CoalescedRun> plan_udp(std::vector<std::vector<uint8_t>>& pkts, size_t* failures = nullptr) {
  std::vector<PacketRef> refs;
  for (auto& p : pkts) refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  std::vector<CoalescedRun> runs(refs.size());
  const auto plan = encap::plan_tcp_coalescing(refs, 64, runs, true);
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
  EXPECT_EQ(r.vnet.csum_offset, 6);
  std::vector<uint8_t> merged = pkts[0];
  for (int k = 1; k < 6; ++k) merged.insert(merged.end(), pkts[k].begin() + 28, pkts[k].end());
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
  EXPECT_EQ(encap::plan_tcp_coalescing(refs, 64, runs, false).runs, 2u) << "UDP only when asked";
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
      const auto plan = encap::plan_tcp_coalescing(refs, 64, runs, udp);
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
