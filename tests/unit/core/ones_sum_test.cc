#include "core/ones_sum.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/support/packet_builder.h"

namespace udpring {
namespace {

// RFC 1071 spelled out: big-endian 16-bit words, a lone last byte padded
// with zero, end-around carry after every addition.
uint32_t reference_sum(const uint8_t* p, size_t len) {
  uint32_t s = 0;
  for (size_t i = 0; i < len; i += 2) {
    s += (uint32_t{p[i]} << 8) | (i + 1 < len ? p[i + 1] : 0u);
    s = (s & 0xffff) + (s >> 16);
  }
  return s;
}

uint32_t fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint32_t>(s);
}

// The raw word sums fold to the byte-swapped sum on a little-endian host and
// to the sum itself on a big-endian one.
uint32_t host_order(uint32_t native_folded) {
  if constexpr (std::endian::native == std::endian::little) {
    return ((native_folded & 0xff) << 8) | (native_folded >> 8);
  }
  return native_folded;
}

TEST(OnesSum, Rfc1071Example) {
  // RFC 1071 §3: these eight bytes sum to ddf2.
  const uint8_t b[8] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(core::ones_sum(b, 8), 0xddf2u);
}

// Every length up to 1100 at every alignment in a 32-byte window, for the
// dispatching entry point and for each loop on its own, against the
// reference; lengths cross the 64-byte vector step and kWideSumMinBytes.
TEST(OnesSum, EveryLoopMatchesTheReference) {
  const auto data = test::random_bytes(1100 + 32, 7);
  const bool avx2 = core::detail::cpu_has_avx2();
  for (size_t off = 0; off < 32; ++off) {
    for (size_t len = 0; len + off <= data.size() && len <= 1100; ++len) {
      const uint8_t* p = data.data() + off;
      const uint32_t want = reference_sum(p, len);
      ASSERT_EQ(core::ones_sum(p, len), want) << "off " << off << " len " << len;
      ASSERT_EQ(host_order(fold(core::detail::word_sum_scalar(p, len))), want) << off << " " << len;
      if (avx2) {
        ASSERT_EQ(host_order(fold(core::detail::word_sum_avx2(p, len))), want) << off << " " << len;
      }
    }
  }
}

// All-ones data is the worst case for the 32-bit vector lanes: 5 MiB runs
// past the point where they are widened into the total (2 MiB) twice.
TEST(OnesSum, LargeInputsDoNotOverflowTheLanes) {
  std::vector<uint8_t> ff(5u << 20, 0xff);
  EXPECT_EQ(core::ones_sum(ff.data(), ff.size()), reference_sum(ff.data(), ff.size()));
  const auto rnd = test::random_bytes(5u << 20, 8);
  EXPECT_EQ(core::ones_sum(rnd.data(), rnd.size()), reference_sum(rnd.data(), rnd.size()));
  if (core::detail::cpu_has_avx2()) {
    EXPECT_EQ(host_order(fold(core::detail::word_sum_avx2(ff.data(), ff.size()))),
              reference_sum(ff.data(), ff.size()));
  }
}

TEST(OnesSum, ChainsAnInitialSum) {
  const auto data = test::random_bytes(3000, 9);
  // Summing the halves with the first as `initial` equals summing the whole
  // (the split is at an even offset, so no byte changes its half of a word).
  const uint32_t first = core::ones_sum(data.data(), 1000);
  EXPECT_EQ(core::ones_sum(data.data() + 1000, 2000, first), core::ones_sum(data.data(), 3000));
  // An unfolded initial value is folded in too.
  EXPECT_EQ(core::ones_sum(data.data(), 3000, 0x3fffff), fold(uint64_t{core::ones_sum(data.data(), 3000)} + 0x3fffff));
}

TEST(OnesSum, ReportsTheLoopItRuns) {
  EXPECT_EQ(std::string(core::ones_sum_impl()), core::detail::cpu_has_avx2() ? "avx2" : "scalar");
}

}  // namespace
}  // namespace udpring
