#pragma once
// --busy-poll: submit and reap without sleeping for a while before the
// worker blocks. When to spin is encap/busy_poll_policy.h; this is the spin.

#include <atomic>
#include <cstdint>

#include "core/worker_stats.h"
#include "encap/busy_poll_policy.h"
#include "io/dataplane/ring.h"

namespace udpring::io {

class BusyPoll {
 public:
  BusyPoll(Ring& ring, core::WorkerStats& stats, const std::atomic<bool>& stop, unsigned spin_us,
           encap::BusyPollMode mode) noexcept
      : ring_(ring), stats_(stats), stop_(stop), policy_(spin_us, mode) {}

  /// Spins for completions if the policy says so. `had_events`: the turn
  /// just done handled completions; `turn`: what it read. Returns true
  /// when completions are ready (the caller need not block).
  bool wait(bool had_events, encap::TurnInput turn);

 private:
  Ring& ring_;
  core::WorkerStats& stats_;
  const std::atomic<bool>& stop_;
  encap::BusyPollPolicy policy_;
};

}  // namespace udpring::io
