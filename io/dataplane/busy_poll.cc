#include "io/dataplane/busy_poll.h"

#include <sched.h>

#include <chrono>

namespace udpring::io {

bool BusyPoll::wait(bool had_events, encap::TurnInput turn) {
  if (!policy_.may_spin(had_events)) return false;  // an idle turn: not even a clock read
  if (!policy_.should_spin(had_events, turn, std::chrono::steady_clock::now())) return false;
  // The first call submits this turn's sends and writes, work a sleep would
  // do too: the wait the policy judges starts after it.
  io_uring_submit_and_get_events(ring_.get());
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::microseconds(policy_.spin_us());
  for (;;) {
    if (io_uring_cq_ready(ring_.get()) > 0) {
      stats_.add(core::Counter::kSpinHits);
      if (policy_.on_hit(std::chrono::steady_clock::now() - start)) stats_.add(core::Counter::kSpinDearHits);
      return true;
    }
    // Let whatever else is runnable on this core (the kernel's network
    // softirq threads, the applications) go first: on a loaded machine a
    // spin must not take their CPU; on an idle one this returns at once.
    if (policy_.adaptive()) sched_yield();
    if (std::chrono::steady_clock::now() >= deadline || stop_.load(std::memory_order_relaxed)) break;
    io_uring_submit_and_get_events(ring_.get());
  }
  policy_.on_miss();
  stats_.add(core::Counter::kSpinMisses);
  return false;
}

}  // namespace udpring::io
