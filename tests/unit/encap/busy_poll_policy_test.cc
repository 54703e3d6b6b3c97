#include "encap/busy_poll_policy.h"

#include <gtest/gtest.h>

namespace udpring {
namespace {

using encap::BusyPollPolicy;
using std::chrono::microseconds;

const BusyPollPolicy::Clock::time_point kStart = BusyPollPolicy::Clock::time_point{} + std::chrono::hours(1);

TEST(BusyPollPolicy, ZeroNeverSpinsAndAlwaysModeAlwaysSpins) {
  BusyPollPolicy off(0, true);
  EXPECT_FALSE(off.should_spin(true, 0, kStart));
  BusyPollPolicy always(50, false);
  EXPECT_TRUE(always.should_spin(false, 0, kStart)) << "even after an idle turn";
  always.on_miss();
  EXPECT_TRUE(always.should_spin(true, 1 << 20, kStart)) << "no back-off, no bulk rule";
}

TEST(BusyPollPolicy, AdaptiveSpinsOnlyAfterActivity) {
  BusyPollPolicy p(50, true);
  EXPECT_FALSE(p.may_spin(false)) << "an idle turn needs no clock read to say no";
  EXPECT_TRUE(p.may_spin(true));
  EXPECT_FALSE(BusyPollPolicy(0, false).may_spin(true));
  EXPECT_TRUE(BusyPollPolicy(50, false).may_spin(false));
  EXPECT_FALSE(p.should_spin(false, 0, kStart));
  EXPECT_TRUE(p.should_spin(true, 64, kStart));
}

TEST(BusyPollPolicy, MissesDoubleTheChancesSkippedUpToTheCap) {
  BusyPollPolicy p(50, true);
  auto now = kStart;
  uint32_t expected_skip = 1;
  for (int miss = 0; miss < 10; ++miss) {
    ASSERT_TRUE(p.should_spin(true, 64, now));
    p.on_miss();
    for (uint32_t k = 0; k < expected_skip; ++k) {
      EXPECT_FALSE(p.should_spin(true, 64, now)) << "miss " << miss << ", chance " << k;
    }
    expected_skip = std::min(expected_skip * 2, BusyPollPolicy::kMaxBackoff);
  }
  EXPECT_TRUE(p.should_spin(true, 64, now));
  p.on_hit();
  EXPECT_TRUE(p.should_spin(true, 64, now)) << "a hit resets the back-off";
  p.on_miss();
  EXPECT_FALSE(p.should_spin(true, 64, now)) << "one chance skipped after the reset";
  EXPECT_TRUE(p.should_spin(true, 64, now));
}

TEST(BusyPollPolicy, NoSpinWithinTheQuietTimeOfABulkTurn) {
  BusyPollPolicy p(50, true);
  EXPECT_FALSE(p.should_spin(true, BusyPollPolicy::kBulkTurnBytes, kStart));
  EXPECT_FALSE(p.should_spin(true, 64, kStart + microseconds(999)));
  EXPECT_TRUE(p.should_spin(true, 64, kStart + BusyPollPolicy::kBulkQuiet));
  EXPECT_TRUE(p.should_spin(true, BusyPollPolicy::kBulkTurnBytes - 1, kStart + BusyPollPolicy::kBulkQuiet))
      << "just under the bulk size is not bulk";
}

}  // namespace
}  // namespace udpring
