// The control loop's chores off its thread: run every period, and gone at
// once when the loop ends.

#include "io/daemon/periodic_task.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace udpring::io {
namespace {

using Clock = std::chrono::steady_clock;

TEST(PeriodicTask, RunsEveryPeriodOnAnotherThread) {
  std::atomic<int> runs{0};
  std::atomic<bool> other_thread{true};
  const auto caller = std::this_thread::get_id();
  {
    PeriodicTask task(std::chrono::milliseconds(20), [&] {
      if (std::this_thread::get_id() == caller) other_thread = false;
      ++runs;
    });
    EXPECT_EQ(runs.load(), 0);  // the first run is one period away
    std::this_thread::sleep_for(std::chrono::milliseconds(210));
  }
  EXPECT_GE(runs.load(), 5);
  EXPECT_LE(runs.load(), 11);
  EXPECT_TRUE(other_thread.load());
}

TEST(PeriodicTask, EndsAtOnceBetweenRunsAndAfterARunInProgress) {
  std::atomic<int> runs{0};
  auto t0 = Clock::now();
  { PeriodicTask idle(std::chrono::hours(1), [&] { ++runs; }); }
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(500));
  EXPECT_EQ(runs.load(), 0);

  std::atomic<bool> started{false};
  {
    PeriodicTask slow(std::chrono::milliseconds(1), [&] {
      started = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ++runs;
    });
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    t0 = Clock::now();
  }
  // The run in progress finished (the destructor waited for it), and no other began.
  EXPECT_EQ(runs.load(), 1);
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(200));
}

}  // namespace
}  // namespace udpring::io
