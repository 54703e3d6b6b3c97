#pragma once
// When a worker spins for completions instead of sleeping (--busy-poll).
//
// On this kind of VM a sleep/wake costs about 30 us of CPU (the scheduler
// and the hypervisor) and as much latency, per packet at low rates, so a
// spin that finds the next packet is cheaper as well as faster. Adaptive
// mode spins only right after a turn that had completions (an idle worker
// sleeps at once), and, after a spin that found nothing, skips the next
// 1, 2, 4 ... 64 chances, so a slow trickle does not keep a core busy.
// Nor does it spin within kBulkQuiet of a bulk turn (a TSO read or GRO
// receive): bulk traffic wakes the worker seldom per byte, and spinning
// between its turns (mostly after the small turns of returning ACKs) cost
// 15-20 % more daemon CPU per GB with no gain in speed (TCP, 1 and 4
// streams, against --busy-poll=0 in the same run).
//
// The decision only: the spinning itself is io/dataplane/busy_poll.h.

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace udpring::encap {

class BusyPollPolicy {
 public:
  using Clock = std::chrono::steady_clock;
  /// A turn that read this many bytes is bulk traffic.
  static constexpr uint64_t kBulkTurnBytes = 16384;
  static constexpr std::chrono::microseconds kBulkQuiet{1000};
  static constexpr uint32_t kMaxBackoff = 64;

  /// `spin_us` 0 never spins; `adaptive` false spins before every sleep.
  BusyPollPolicy(unsigned spin_us, bool adaptive) noexcept : spin_us_(spin_us), adaptive_(adaptive) {}

  /// Before the worker blocks: spin now? `had_events`: the turn just done
  /// handled completions; `turn_bytes`: what it read from the TUN and socket.
  bool should_spin(bool had_events, uint64_t turn_bytes, Clock::time_point now) noexcept {
    if (!may_spin(had_events)) return false;
    if (!adaptive_) return true;
    if (turn_bytes >= kBulkTurnBytes) last_bulk_turn_ = now;
    if (now - last_bulk_turn_ < kBulkQuiet) return false;
    if (skip_ > 0) {
      --skip_;
      return false;
    }
    return true;
  }
  /// The part of should_spin() that needs no clock: false means no spin
  /// whatever the time, so an idle worker blocks without reading the clock.
  bool may_spin(bool had_events) const noexcept {
    return spin_us_ != 0 && (!adaptive_ || had_events);
  }
  /// A spin found completions: spin at the next chance again.
  void on_hit() noexcept { backoff_ = 0; }
  /// A spin found nothing: skip twice as many chances as last time.
  void on_miss() noexcept {
    backoff_ = std::min(backoff_ ? backoff_ * 2 : 1, kMaxBackoff);
    skip_ = backoff_;
  }

  unsigned spin_us() const noexcept { return spin_us_; }
  bool adaptive() const noexcept { return adaptive_; }

 private:
  unsigned spin_us_;
  bool adaptive_;
  Clock::time_point last_bulk_turn_{};
  uint32_t skip_ = 0;     // chances still to skip
  uint32_t backoff_ = 0;  // chances skipped after the last miss
};

}  // namespace udpring::encap
