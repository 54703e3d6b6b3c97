#pragma once
// When a worker spins for completions instead of sleeping (--busy-poll).
//
// On this kind of VM a worker that sleeps and is woken pays about 15 us of
// CPU per packet at low rates (the scheduler and the hypervisor), and as
// much latency. A spin that finds the next packet sooner than that is
// cheaper as well as faster; a longer one buys latency with CPU. Adaptive
// mode therefore spins only right after a turn that had completions (an
// idle worker sleeps at once), and judges each spin by how long it waited:
// one that found nothing, or found it only after kCheapSpin, skips the next
// 1, 2, 4 ... 64 chances.
//
// The judging is kept apart for each kind of wait, because the kind
// predicts its length. A turn that read submits its sends or writes, and
// the spin after it finds their completions at once. After the turn that
// reaps them, where the last packet came from says what comes next: after
// a peer's datagram went into the TUN, the local application's answer
// (about 17 us in a ping-pong here); after a TUN packet went to a peer, the
// peer's answer, a whole remote round trip away (30-35 us). One shared
// back-off let those long waits keep the core spinning (they hit within
// 100 us), and they were half the daemons' CPU per round trip.
//
// --busy-poll=eager judges by misses alone: it spins through the long
// waits too, which buys latency with a core (the price is in
// docs/performance.md).
//
// Nor does it spin within kBulkQuiet of a bulk turn (a TSO read or GRO
// receive): bulk traffic wakes the worker seldom per byte, and spinning
// between its turns (mostly after the small turns of returning ACKs) cost
// 15-20 % more daemon CPU per GB with no gain in speed (TCP, 1 and 4
// streams, against --busy-poll=0 in the same run).
//
// The decision only: the spinning itself is io/dataplane/busy_poll.h.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>

namespace udpring::encap {

/// What one turn of a worker read, by where it came from.
struct TurnInput {
  uint64_t tun_bytes = 0;   // read from the TUN (on their way to peers)
  uint64_t peer_bytes = 0;  // received from peers (on their way into the TUN)

  uint64_t total() const noexcept { return tun_bytes + peer_bytes; }
  /// 0: nothing read, 1: TUN only, 2: peers only, 3: both.
  unsigned kind() const noexcept { return (tun_bytes ? 1u : 0u) | (peer_bytes ? 2u : 0u); }
};

/// --busy-poll's modes.
enum class BusyPollMode : uint8_t {
  kAlways,  // USEC: spin before every sleep, no back-off, no yield
  kCheap,   // auto: after traffic, only where spinning costs no more than sleeping
  kEager,   // eager: after traffic, through any wait that ends within the window
};

/// As --busy-poll spells it.
constexpr const char* busy_poll_mode_name(BusyPollMode m) noexcept {
  switch (m) {
    case BusyPollMode::kCheap: return "auto";
    case BusyPollMode::kEager: return "eager";
    case BusyPollMode::kAlways: break;
  }
  return "always";
}

class BusyPollPolicy {
 public:
  using Clock = std::chrono::steady_clock;
  /// A turn that read this many bytes is bulk traffic.
  static constexpr uint64_t kBulkTurnBytes = 16384;
  static constexpr std::chrono::microseconds kBulkQuiet{1000};
  static constexpr uint32_t kMaxBackoff = 64;
  /// A spin that found its completion within this cost about what the
  /// sleep and wake-up it saved would have (some 15 us of CPU, and as much
  /// latency). Chosen by same-run A/B on a 2-vCPU VM: with 15 us the local
  /// application's answers (~17 us) counted as dear and the ping-pong paid
  /// 80 CPU-us per round trip for a worse p50 than not spinning; with 25 us
  /// it pays what not spinning pays (60 us) with a better p99.
  static constexpr std::chrono::microseconds kCheapSpin{25};

  /// `spin_us` 0 never spins.
  BusyPollPolicy(unsigned spin_us, BusyPollMode mode) noexcept
      : spin_us_(spin_us), adaptive_(mode != BusyPollMode::kAlways), judge_wait_(mode == BusyPollMode::kCheap) {}

  /// Before the worker blocks: spin now? `had_events`: the turn just done
  /// handled completions; `turn`: what it read.
  bool should_spin(bool had_events, TurnInput turn, Clock::time_point now) noexcept {
    if (!may_spin(had_events)) return false;
    if (!adaptive_) return true;
    if (turn.total() >= kBulkTurnBytes) last_bulk_turn_ = now;
    if (now - last_bulk_turn_ < kBulkQuiet) return false;
    // A turn that read submits what it read, and the spin after it finds
    // that send's or write's completion at once. The wait after the turn
    // that reaps it is predicted by where the last packet came from.
    if (const unsigned k = turn.kind(); k != 0) {
      kind_ = k;
      last_source_ = k;
    } else {
      kind_ = last_source_ + 3;
    }
    Backoff& b = backoff_[kind_];
    if (b.skip > 0) {
      --b.skip;
      return false;
    }
    return true;
  }
  /// The part of should_spin() that needs no clock: false means no spin
  /// whatever the time, so an idle worker blocks without reading the clock.
  bool may_spin(bool had_events) const noexcept {
    return spin_us_ != 0 && (!adaptive_ || had_events);
  }
  /// The spin that should_spin() allowed found completions after `waited`:
  /// it spins at the next chance of its kind again, unless (auto) it was a
  /// dear one, which counts as a miss. Returns whether it was dear.
  bool on_hit(Clock::duration waited) noexcept {
    const bool dear = waited > kCheapSpin;
    if (judge_wait_ && dear) {
      on_miss();
    } else {
      backoff_[kind_].step = 0;
    }
    return dear;
  }
  /// That spin found nothing: its kind skips twice as many chances as last time.
  void on_miss() noexcept {
    Backoff& b = backoff_[kind_];
    b.step = std::min(b.step ? b.step * 2 : 1, kMaxBackoff);
    b.skip = b.step;
  }

  unsigned spin_us() const noexcept { return spin_us_; }
  bool adaptive() const noexcept { return adaptive_; }

 private:
  struct Backoff {
    uint32_t skip = 0;  // chances still to skip
    uint32_t step = 0;  // chances skipped after the last miss
  };
  unsigned spin_us_;
  bool adaptive_;
  bool judge_wait_;
  Clock::time_point last_bulk_turn_{};
  // By kind of wait: 1-3 after a turn that read (TurnInput::kind()), 3 +
  // the kind of the last turn that read after one that did not, 0 before any.
  std::array<Backoff, 7> backoff_{};
  unsigned kind_ = 0;         // of the spin should_spin() last allowed
  unsigned last_source_ = 0;  // TurnInput::kind() of the last turn that read
};

}  // namespace udpring::encap
