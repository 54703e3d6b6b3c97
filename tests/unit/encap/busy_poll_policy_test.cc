#include "encap/busy_poll_policy.h"

#include <gtest/gtest.h>

namespace udpring {
namespace {

using encap::BusyPollPolicy;
using encap::BusyPollMode;
using encap::TurnInput;
constexpr BusyPollMode kAuto = BusyPollMode::kCheap;
using std::chrono::microseconds;

const BusyPollPolicy::Clock::time_point kStart = BusyPollPolicy::Clock::time_point{} + std::chrono::hours(1);
const TurnInput kSmall{64, 0};           // a turn that read one small packet from the TUN
const TurnInput kFromPeer{0, 64};        // one that received a small datagram
const auto kCheap = microseconds(5);     // a spin that found its completion this soon
const auto kDear = BusyPollPolicy::kCheapSpin + microseconds(1);

TEST(BusyPollPolicy, ZeroNeverSpinsAndAlwaysModeAlwaysSpins) {
  BusyPollPolicy off(0, kAuto);
  EXPECT_FALSE(off.should_spin(true, {}, kStart));
  BusyPollPolicy always(50, BusyPollMode::kAlways);
  EXPECT_TRUE(always.should_spin(false, {}, kStart)) << "even after an idle turn";
  always.on_miss();
  EXPECT_TRUE(always.should_spin(true, {1 << 20, 0}, kStart)) << "no back-off, no bulk rule";
}

TEST(BusyPollPolicy, AdaptiveSpinsOnlyAfterActivity) {
  BusyPollPolicy p(50, kAuto);
  EXPECT_FALSE(p.may_spin(false)) << "an idle turn needs no clock read to say no";
  EXPECT_TRUE(p.may_spin(true));
  EXPECT_FALSE(BusyPollPolicy(0, BusyPollMode::kAlways).may_spin(true));
  EXPECT_TRUE(BusyPollPolicy(50, BusyPollMode::kAlways).may_spin(false));
  EXPECT_FALSE(p.should_spin(false, {}, kStart));
  EXPECT_TRUE(p.should_spin(true, kSmall, kStart));
}

TEST(BusyPollPolicy, MissesDoubleTheChancesSkippedUpToTheCap) {
  BusyPollPolicy p(50, kAuto);
  auto now = kStart;
  uint32_t expected_skip = 1;
  for (int miss = 0; miss < 10; ++miss) {
    ASSERT_TRUE(p.should_spin(true, kSmall, now));
    p.on_miss();
    for (uint32_t k = 0; k < expected_skip; ++k) {
      EXPECT_FALSE(p.should_spin(true, kSmall, now)) << "miss " << miss << ", chance " << k;
    }
    expected_skip = std::min(expected_skip * 2, BusyPollPolicy::kMaxBackoff);
  }
  EXPECT_TRUE(p.should_spin(true, kSmall, now));
  p.on_hit(kCheap);
  EXPECT_TRUE(p.should_spin(true, kSmall, now)) << "a hit resets the back-off";
  p.on_miss();
  EXPECT_FALSE(p.should_spin(true, kSmall, now)) << "one chance skipped after the reset";
  EXPECT_TRUE(p.should_spin(true, kSmall, now));
}

TEST(BusyPollPolicy, NoSpinWithinTheQuietTimeOfABulkTurn) {
  BusyPollPolicy p(50, kAuto);
  EXPECT_FALSE(p.should_spin(true, {BusyPollPolicy::kBulkTurnBytes / 2, BusyPollPolicy::kBulkTurnBytes / 2}, kStart));
  EXPECT_FALSE(p.should_spin(true, kSmall, kStart + microseconds(999)));
  EXPECT_TRUE(p.should_spin(true, kSmall, kStart + BusyPollPolicy::kBulkQuiet));
  EXPECT_TRUE(p.should_spin(true, {BusyPollPolicy::kBulkTurnBytes - 1, 0}, kStart + BusyPollPolicy::kBulkQuiet))
      << "just under the bulk size is not bulk";
}

TEST(BusyPollPolicy, AHitThatWaitedLongerThanAWakeUpCountsAsAMiss) {
  BusyPollPolicy p(100, kAuto);
  ASSERT_TRUE(p.should_spin(true, kSmall, kStart));
  EXPECT_TRUE(p.on_hit(kDear)) << "said dear, for the spin_dear_hits counter";
  EXPECT_FALSE(p.should_spin(true, kSmall, kStart)) << "one chance skipped, as after a miss";
  ASSERT_TRUE(p.should_spin(true, kSmall, kStart));
  p.on_hit(kDear);
  EXPECT_FALSE(p.should_spin(true, kSmall, kStart));
  EXPECT_FALSE(p.should_spin(true, kSmall, kStart)) << "then two";
  ASSERT_TRUE(p.should_spin(true, kSmall, kStart));
  EXPECT_FALSE(p.on_hit(BusyPollPolicy::kCheapSpin));
  EXPECT_TRUE(p.should_spin(true, kSmall, kStart)) << "a hit within kCheapSpin resets the back-off";

  BusyPollPolicy eager(100, BusyPollMode::kEager);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(eager.should_spin(true, kSmall, kStart)) << "eager: any hit keeps spinning, " << i;
    eager.on_hit(microseconds(90));
  }
  eager.on_miss();
  EXPECT_FALSE(eager.should_spin(true, kSmall, kStart)) << "eager still backs off on a miss";
}

// A ping-pong, as a worker sees it: a turn reads a packet and submits its
// send (or write), whose completion the next spin finds at once; the turn
// that reaps it reads nothing, and the wait after it is the peer's answer
// (dear, a remote round trip) after a packet from the TUN, the local
// application's (cheap here) after one from a peer. The dear waits back off
// alone; the others keep spinning.
TEST(BusyPollPolicy, EachKindOfWaitBacksOffOnItsOwn) {
  BusyPollPolicy p(100, kAuto);
  int own = 0, local = 0, remote = 0;
  const auto turn = [&](TurnInput in, int& spun, microseconds waited) {
    if (!p.should_spin(true, in, kStart)) return;
    ++spun;
    p.on_hit(waited);
  };
  for (int round = 0; round < 200; ++round) {
    turn(kSmall, own, kCheap);             // read from the TUN; the send completes
    turn({}, remote, microseconds(40));    // the peer's answer
    turn(kFromPeer, own, kCheap);          // received from the peer; the write completes
    turn({}, local, kCheap);               // the application's next request
  }
  EXPECT_EQ(own, 400);
  EXPECT_EQ(local, 200);
  EXPECT_LE(remote, 10) << "1 in 65 once the back-off is at its cap";
  EXPECT_GE(remote, 3) << "still tried now and then, in case the peer got faster";
  // A turn that read from both sides is a kind of its own.
  EXPECT_EQ((TurnInput{64, 64}).kind(), 3u);
  EXPECT_EQ((TurnInput{}).kind(), 0u);
  EXPECT_TRUE(p.should_spin(true, {64, 64}, kStart));
}

}  // namespace
}  // namespace udpring
