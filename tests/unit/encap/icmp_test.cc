#include "encap/icmp.h"

#include "encap/icmp_rate_limit.h"

#include <gtest/gtest.h>

#include "tests/support/packet_builder.h"

namespace udpring {
namespace {

using test::PacketBuilder;

const core::Be32 kTunAddr = *core::parse_ipv4("10.5.1.0");

std::vector<uint8_t> unreach_for(const std::vector<uint8_t>& offender) {
  std::vector<uint8_t> out(encap::kIcmpUnreachMaxBytes, 0xee);
  const size_t n = encap::build_net_unreachable(offender.data(), offender.size(), kTunAddr, out.data());
  out.resize(n);
  return out;
}

TEST(IcmpUnreach, ExactBytesForUdpOffender) {
  const auto offender = PacketBuilder().src("10.5.1.2").dst("10.5.99.1").ttl(63).payload_bytes(100).build();
  const auto m = unreach_for(offender);
  ASSERT_EQ(m.size(), 20u + 8 + 20 + 8);
  // IP header: v4 IHL5, TOS 0, total length, ID 0, no flags, TTL 8, ICMP.
  const std::vector<uint8_t> ip_head = {0x45, 0, 0, 56, 0, 0, 0, 0, 8, 1};
  EXPECT_TRUE(std::equal(ip_head.begin(), ip_head.end(), m.begin()));
  EXPECT_EQ(core::format_ipv4(core::Ipv4View(const_cast<uint8_t*>(m.data())).src()), "10.5.1.0");
  EXPECT_EQ(core::format_ipv4(core::Ipv4View(const_cast<uint8_t*>(m.data())).dst()), "10.5.1.2");
  EXPECT_TRUE(test::header_checksum_ok(m));
  // ICMP: type 3 code 0, unused 0, then offender header + 8 payload bytes.
  EXPECT_EQ(m[20], 3);
  EXPECT_EQ(m[21], 0);
  EXPECT_EQ(m[24] | m[25] | m[26] | m[27], 0);
  EXPECT_TRUE(std::equal(offender.begin(), offender.begin() + 28, m.begin() + 28));
  EXPECT_EQ(core::ones_sum(m.data() + 20, m.size() - 20), 0xffffu);  // ICMP checksum verifies
}

TEST(IcmpUnreach, QuotesOptionsAndShortPayload) {
  const auto offender =
      PacketBuilder().options(std::vector<uint8_t>(40, 1)).payload_bytes(3).build();  // IHL 15
  const auto m = unreach_for(offender);
  ASSERT_EQ(m.size(), 20u + 8 + 60 + 3);
  EXPECT_TRUE(std::equal(offender.begin(), offender.end(), m.begin() + 28));
  EXPECT_EQ(core::ones_sum(m.data() + 20, m.size() - 20), 0xffffu);
}

TEST(IcmpUnreach, EchoRequestGetsAnswer) {
  std::vector<uint8_t> echo(16, 0);
  echo[0] = 8;  // echo request
  const auto offender = PacketBuilder().protocol(core::kIpProtoIcmp).payload(echo).build();
  EXPECT_FALSE(unreach_for(offender).empty());
}

struct SuppressCase {
  const char* name;
  std::vector<uint8_t> offender;
};

std::vector<uint8_t> icmp_of_type(uint8_t type) {
  std::vector<uint8_t> body(16, 0);
  body[0] = type;
  return PacketBuilder().protocol(core::kIpProtoIcmp).payload(body).build();
}

class IcmpSuppress : public testing::TestWithParam<SuppressCase> {};

TEST_P(IcmpSuppress, NoReply) { EXPECT_TRUE(unreach_for(GetParam().offender).empty()); }

INSTANTIATE_TEST_SUITE_P(
    Icmp, IcmpSuppress,
    testing::Values(SuppressCase{"dest_unreachable", icmp_of_type(3)},
                    SuppressCase{"time_exceeded", icmp_of_type(11)},
                    SuppressCase{"param_problem", icmp_of_type(12)},
                    SuppressCase{"redirect", icmp_of_type(5)},
                    SuppressCase{"non_first_fragment", PacketBuilder().frag(0x0001).build()},
                    SuppressCase{"to_broadcast", PacketBuilder().dst("255.255.255.255").build()},
                    SuppressCase{"to_multicast", PacketBuilder().dst("224.0.0.5").build()},
                    SuppressCase{"from_zero", PacketBuilder().src("0.0.0.0").build()}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(IcmpUnreach, FirstFragmentIsAnswered) {
  EXPECT_FALSE(unreach_for(PacketBuilder().frag(0x2000).build()).empty());  // MF, offset 0
}

// A TSO super-packet with no route is answered from its first bytes, which
// only send_tso's checks (20 bytes, version 4) have seen. Found by
// tests/fuzz/icmp_fuzz.cc (corpus/icmp/crash-07dc5236...): the reply read
// past the packet.
TEST(IcmpUnreach, SuperPacketCutShortIsNotQuoted) {
  // IHL 15 (60 bytes of header) in a 40-byte read: nothing to quote whole.
  auto cut = PacketBuilder().options(std::vector<uint8_t>(40, 1)).build();
  cut.resize(40);
  EXPECT_TRUE(unreach_for(cut).empty());
  // IHL below 5.
  auto low = PacketBuilder().build();
  low[0] = 0x44;
  EXPECT_TRUE(unreach_for(low).empty());
  // An ICMP header with no type byte after it, whatever its total length says.
  auto bare = PacketBuilder().protocol(core::kIpProtoIcmp).payload({}).build();
  bare[2] = 0xab, bare[3] = 0xab;
  EXPECT_TRUE(unreach_for(bare).empty());
  // The header all there: answered, as before.
  auto whole = PacketBuilder().payload_bytes(4).build();
  whole[2] = 0, whole[3] = 0;  // a BIG TCP super-packet's total length
  EXPECT_EQ(unreach_for(whole).size(), 20u + 8 + 20 + 4);
}

TEST(IcmpTimeExceeded, TypeElevenCodeZeroQuotingTheOffender) {
  const auto offender = PacketBuilder().src("10.5.2.7").dst("10.5.1.9").ttl(1).payload_bytes(40).build();
  std::vector<uint8_t> m(encap::kIcmpUnreachMaxBytes);
  m.resize(encap::build_icmp_error(encap::IcmpError::kTimeExceeded, offender.data(), offender.size(),
                                   kTunAddr, m.data()));
  ASSERT_EQ(m.size(), 20u + 8 + 20 + 8);
  EXPECT_EQ(core::format_ipv4(core::Ipv4View(m.data()).src()), "10.5.1.0");
  EXPECT_EQ(core::format_ipv4(core::Ipv4View(m.data()).dst()), "10.5.2.7");
  EXPECT_TRUE(test::header_checksum_ok(m));
  EXPECT_EQ(m[20], 11);
  EXPECT_EQ(m[21], 0);
  EXPECT_TRUE(std::equal(offender.begin(), offender.begin() + 28, m.begin() + 28));
  EXPECT_EQ(core::ones_sum(m.data() + 20, m.size() - 20), 0xffffu);
  // Never in reply to an ICMP error (here: a Time Exceeded itself).
  EXPECT_EQ(encap::build_icmp_error(encap::IcmpError::kTimeExceeded, m.data(), m.size(), kTunAddr,
                                    std::vector<uint8_t>(encap::kIcmpUnreachMaxBytes).data()),
            0u);
}

TEST(IcmpFragmentationNeeded, TypeThreeCodeFourCarriesTheNextHopMtu) {
  const auto offender = PacketBuilder().src("10.5.1.7").dst("10.5.2.9").payload_bytes(1400).build();
  std::vector<uint8_t> m(encap::kIcmpUnreachMaxBytes);
  m.resize(encap::build_icmp_error(encap::IcmpError::kFragmentationNeeded, offender.data(),
                                   offender.size(), kTunAddr, m.data(), 1372));
  ASSERT_EQ(m.size(), 20u + 8 + 20 + 8);
  EXPECT_EQ(core::format_ipv4(core::Ipv4View(m.data()).dst()), "10.5.1.7");
  EXPECT_EQ(m[20], 3);
  EXPECT_EQ(m[21], 4);
  EXPECT_EQ(m[24], 0);  // unused
  EXPECT_EQ(m[25], 0);
  EXPECT_EQ((m[26] << 8) | m[27], 1372);
  EXPECT_TRUE(std::equal(offender.begin(), offender.begin() + 28, m.begin() + 28));
  EXPECT_EQ(core::ones_sum(m.data() + 20, m.size() - 20), 0xffffu);
  // The other kinds leave that word 0, whatever is passed.
  std::vector<uint8_t> n(encap::kIcmpUnreachMaxBytes);
  n.resize(encap::build_icmp_error(encap::IcmpError::kNetUnreachable, offender.data(), offender.size(),
                                   kTunAddr, n.data(), 1372));
  EXPECT_EQ(n[21], 0);
  EXPECT_EQ((n[26] << 8) | n[27], 0);
}

constexpr uint64_t kSecond = 1'000'000'000;

TEST(IcmpRateLimit, ABurstThenTheRatePerSource) {
  encap::IcmpRateLimit limit(10, 5);
  const core::Be32 a = *core::parse_ipv4("10.5.1.2"), b = *core::parse_ipv4("10.5.1.3");
  uint64_t t = 7 * kSecond;
  int sent = 0;
  for (int i = 0; i < 20; ++i) sent += limit.allow(a, t) ? 1 : 0;
  EXPECT_EQ(sent, 5);  // the burst, at one instant
  // Another source has its own bucket.
  EXPECT_TRUE(limit.allow(b, t));
  // 10 per second: one token each 100 ms, not before.
  EXPECT_FALSE(limit.allow(a, t + 99'000'000));
  EXPECT_TRUE(limit.allow(a, t + 100'000'000));
  EXPECT_FALSE(limit.allow(a, t + 100'000'000));
  // A long quiet time refills only up to the burst.
  t += 3600 * kSecond;
  sent = 0;
  for (int i = 0; i < 20; ++i) sent += limit.allow(a, t) ? 1 : 0;
  EXPECT_EQ(sent, 5);
  // Over a steady flood, about the rate gets through.
  sent = 0;
  for (uint64_t ms = 0; ms < 10'000; ++ms) sent += limit.allow(a, t + 1 + ms * 1'000'000) ? 1 : 0;
  EXPECT_GE(sent, 99);
  EXPECT_LE(sent, 101);
}

TEST(IcmpRateLimit, RateZeroSendsEveryError) {
  encap::IcmpRateLimit limit(0, 1);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limit.allow(*core::parse_ipv4("10.5.1.2"), 0));
}

}  // namespace
}  // namespace udpring
