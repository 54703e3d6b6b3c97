#include "core/ipv4.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/support/packet_builder.h"

namespace udpring {
namespace {

using core::Ipv4Error;
using test::PacketBuilder;

struct ValidateCase {
  const char* name;
  std::vector<uint8_t> bytes;
  size_t len;  // bytes handed to validate (may differ from bytes.size())
  Ipv4Error want;
};

std::vector<uint8_t> with(std::vector<uint8_t> p, size_t at, uint8_t v) {
  p[at] = v;
  return p;
}

std::vector<ValidateCase> validate_cases() {
  const auto good = PacketBuilder().payload_bytes(100).build();
  const auto opts = PacketBuilder().options({0x94, 0x04, 0, 0, 1, 1, 1, 0}).build();
  const auto full_opts = PacketBuilder().options(std::vector<uint8_t>(40, 1)).build();
  const auto frag = PacketBuilder().frag(0x2000 | 185).build();  // MF, offset 1480
  auto v6 = good;
  v6[0] = 0x60;
  std::vector<ValidateCase> cases = {
      {"good", good, good.size(), Ipv4Error::kOk},
      {"with_options", opts, opts.size(), Ipv4Error::kOk},
      {"max_options_ihl15", full_opts, full_opts.size(), Ipv4Error::kOk},
      {"fragment_is_still_valid", frag, frag.size(), Ipv4Error::kOk},
      {"minimum_header_only", PacketBuilder().payload({}).build(), 20, Ipv4Error::kOk},
      {"empty", {}, 0, Ipv4Error::kTooShort},
      {"one_byte", {0x45}, 1, Ipv4Error::kTooShort},
      {"nineteen_bytes", good, 19, Ipv4Error::kTooShort},
      {"ipv6", v6, v6.size(), Ipv4Error::kBadVersion},
      {"version_zero", with(good, 0, 0x05), good.size(), Ipv4Error::kBadVersion},
      {"ihl_four", with(good, 0, 0x44), good.size(), Ipv4Error::kBadIhl},
      {"ihl_zero", with(good, 0, 0x40), good.size(), Ipv4Error::kBadIhl},
      {"ihl_beyond_data", with(PacketBuilder().payload({}).build(), 0, 0x46), 20,
       Ipv4Error::kTooShort},
      {"total_length_longer", good, good.size() - 1, Ipv4Error::kLengthMismatch},
      {"total_length_shorter", with(good, 3, static_cast<uint8_t>(good[3] - 1)), good.size(),
       Ipv4Error::kLengthMismatch},
  };
  return cases;
}

class ValidateTest : public testing::TestWithParam<ValidateCase> {};

TEST_P(ValidateTest, Classifies) {
  const ValidateCase& c = GetParam();
  EXPECT_EQ(core::validate_ipv4(c.bytes.data(), c.len), c.want);
}

INSTANTIATE_TEST_SUITE_P(Ipv4, ValidateTest, testing::ValuesIn(validate_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Ipv4Checksum, BuilderProducesVerifyingHeader) {
  const auto p = PacketBuilder().build();
  EXPECT_TRUE(test::header_checksum_ok(p));
  auto bad = p;
  bad[10] ^= 1;
  EXPECT_FALSE(test::header_checksum_ok(bad));
}

TEST(Ipv4Checksum, KnownVector) {
  // RFC 1071-style example header: 4500 0073 0000 4000 4011 ---- c0a8 0001 c0a8 00c7.
  uint8_t h[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                   0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(core::internet_checksum(h, 20), 0xb861);
}

TEST(Ipv4Checksum, OddLengthPadsWithZero) {
  const uint8_t odd[3] = {0x12, 0x34, 0x56};
  const uint8_t even[4] = {0x12, 0x34, 0x56, 0x00};
  EXPECT_EQ(core::internet_checksum(odd, 3), core::internet_checksum(even, 4));
}

// Every TTL, on many random headers: the incremental update must equal a
// full recompute, byte for byte.
TEST(Ipv4Ttl, IncrementalMatchesFullRecomputeForAllTtls) {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    for (int ttl = 2; ttl <= 255; ++ttl) {
      auto p = PacketBuilder()
                   .ttl(static_cast<uint8_t>(ttl))
                   .id(static_cast<uint16_t>(rng()))
                   .tos(static_cast<uint8_t>(rng()))
                   .protocol(static_cast<uint8_t>(rng()))
                   .build();
      for (int b = 12; b < 20; ++b) p[b] = static_cast<uint8_t>(rng());
      core::ipv4_set_header_checksum(p.data());
      ASSERT_TRUE(core::ipv4_decrement_ttl(p.data()));
      ASSERT_EQ(p[8], ttl - 1);
      auto expect = p;
      core::ipv4_set_header_checksum(expect.data());
      ASSERT_EQ(p[10], expect[10]) << "ttl " << ttl << " trial " << trial;
      ASSERT_EQ(p[11], expect[11]) << "ttl " << ttl << " trial " << trial;
    }
  }
}

// Headers whose checksum sits at the carry boundaries of the 0x0100 add.
TEST(Ipv4Ttl, CarryBoundaries) {
  for (uint32_t target : {0xfeffu, 0xff00u, 0xffffu, 0x0000u, 0x00ffu}) {
    bool found = false;
    for (uint32_t id = 0; id < 65536 && !found; ++id) {
      auto p = PacketBuilder().id(static_cast<uint16_t>(id)).ttl(100).build();
      if (((uint32_t{p[10]} << 8) | p[11]) != target) continue;
      found = true;
      ASSERT_TRUE(core::ipv4_decrement_ttl(p.data()));
      auto expect = p;
      core::ipv4_set_header_checksum(expect.data());
      EXPECT_EQ(p[10], expect[10]) << std::hex << target;
      EXPECT_EQ(p[11], expect[11]) << std::hex << target;
      EXPECT_TRUE(test::header_checksum_ok(p));
    }
    if (target != 0xffffu) {
      EXPECT_TRUE(found) << std::hex << target;
    }
  }
}

TEST(Ipv4Ttl, DropsAtOneAndZeroWithoutTouchingThePacket) {
  for (uint8_t ttl : {uint8_t{0}, uint8_t{1}}) {
    auto p = PacketBuilder().ttl(ttl).build();
    const auto before = p;
    EXPECT_FALSE(core::ipv4_decrement_ttl(p.data()));
    EXPECT_EQ(p, before);
  }
}

TEST(Ipv4View, Fields) {
  auto p = PacketBuilder().src("1.2.3.4").dst("5.6.7.8").ttl(9).protocol(6).frag(0x2003).build();
  core::Ipv4View v(p.data());
  EXPECT_EQ(v.version(), 4);
  EXPECT_EQ(v.header_bytes(), 20u);
  EXPECT_EQ(v.total_length(), p.size());
  EXPECT_EQ(v.frag_offset(), 3);
  EXPECT_EQ(v.ttl(), 9);
  EXPECT_EQ(v.protocol(), 6);
  EXPECT_EQ(v.src(), *core::parse_ipv4("1.2.3.4"));
  EXPECT_EQ(v.dst(), *core::parse_ipv4("5.6.7.8"));
}

TEST(Ipv4Addr, ParseAndFormat) {
  EXPECT_EQ(core::format_ipv4(*core::parse_ipv4("10.5.34.0")), "10.5.34.0");
  EXPECT_FALSE(core::parse_ipv4("10.5.34"));
  EXPECT_FALSE(core::parse_ipv4("10.5.34.256"));
  EXPECT_FALSE(core::parse_ipv4("10.05.34.1"));
  EXPECT_FALSE(core::parse_ipv4("10.5.34.1 "));
  const auto p = core::parse_prefix("10.5.34.7/24");
  ASSERT_TRUE(p);
  EXPECT_EQ(core::format_prefix(*p), "10.5.34.0/24");  // host bits masked
  EXPECT_TRUE(core::parse_prefix("0.0.0.0/0"));
  EXPECT_FALSE(core::parse_prefix("10.0.0.0/33"));
  EXPECT_FALSE(core::parse_prefix("10.0.0.0/"));
  EXPECT_FALSE(core::parse_prefix("10.0.0.0"));
  EXPECT_EQ(core::Ipv4Prefix::host_mask(0), 0u);
  EXPECT_EQ(core::Ipv4Prefix::host_mask(32), 0xffffffffu);
}

}  // namespace
}  // namespace udpring
