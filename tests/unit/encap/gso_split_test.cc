#include "encap/gso_split.h"

#include "encap/coalesce.h"

#include <gtest/gtest.h>

#include "tests/support/offload_packets.h"

namespace udpring {
namespace {

using encap::TsoStatus;
using test::kAck;
using test::kCwr;
using test::kFin;
using test::kPsh;
using test::load32;
using test::PacketBuilder;
using test::Split;
using test::split;
using test::tcp_packet;
using test::udp_packet;

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

}  // namespace
}  // namespace udpring
