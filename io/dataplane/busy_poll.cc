#include "io/dataplane/busy_poll.h"

#include <sched.h>

#include <chrono>

namespace udpring::io {

bool BusyPoll::wait(bool had_events, uint64_t turn_bytes) {
  if (!policy_.may_spin(had_events)) return false;  // an idle turn: not even a clock read
  const auto now = std::chrono::steady_clock::now();
  if (!policy_.should_spin(had_events, turn_bytes, now)) return false;
  const auto deadline = now + std::chrono::microseconds(policy_.spin_us());
  do {
    io_uring_submit_and_get_events(ring_.get());
    if (io_uring_cq_ready(ring_.get()) > 0) {
      policy_.on_hit();
      stats_.add(core::Counter::kSpinHits);
      return true;
    }
    // Let whatever else is runnable on this core (the kernel's network
    // softirq threads, the applications) go first: on a loaded machine a
    // spin must not take their CPU; on an idle one this returns at once.
    if (policy_.adaptive()) sched_yield();
  } while (std::chrono::steady_clock::now() < deadline && !stop_.load(std::memory_order_relaxed));
  policy_.on_miss();
  stats_.add(core::Counter::kSpinMisses);
  return false;
}

}  // namespace udpring::io
