#pragma once
// A token bucket per offender source for the ICMP errors a worker generates
// (--icmp-rate per second, --icmp-burst at once), so that a flood of packets
// with no route or an expiring TTL is not answered packet for packet, and
// one noisy source cannot use up the answers for the others.
//
// The buckets are a fixed table indexed by a hash of the source: no
// allocation, no lock (each worker has its own). Two sources that share a
// slot take turns: a new source resets the slot to a full bucket, which can
// only answer more, never fewer, than a table with a slot per source.

#include <algorithm>
#include <array>
#include <cstdint>

#include "core/be32.h"

namespace udpring::encap {

class IcmpRateLimit {
 public:
  static constexpr size_t kSlots = 256;

  /// `per_second` tokens added per second, at most `burst` held; a
  /// per_second of 0 turns limiting off (every error is sent).
  IcmpRateLimit(uint32_t per_second, uint32_t burst) noexcept
      : per_second_(per_second), burst_(burst) {}

  /// True if an error for a packet from `src` may be sent at `now_ns`
  /// (CLOCK_MONOTONIC); takes the token when it is.
  bool allow(core::Be32 src, uint64_t now_ns) noexcept {
    if (per_second_ == 0) return true;
    Slot& s = slots_[index(src)];
    // Tokens are kept in millionths, so that a rate of 1/s refills in
    // whole steps of 1 µs and nothing is lost to rounding.
    constexpr uint64_t kUnit = 1'000'000;
    const uint64_t cap = uint64_t{burst_} * kUnit;
    if (!s.used || s.src != src.raw) {
      s = Slot{src.raw, true, cap, now_ns};
    } else if (now_ns > s.last_ns) {
      // µs × rate = millionths; a gap past 1,000 s refills as 1,000 s would.
      const uint64_t us = std::min<uint64_t>((now_ns - s.last_ns) / 1000, 1'000'000'000);
      const uint64_t add = us * per_second_;
      s.tokens = add >= cap - s.tokens ? cap : s.tokens + add;
      s.last_ns = now_ns;
    }
    if (s.tokens < kUnit) return false;
    s.tokens -= kUnit;
    return true;
  }

 private:
  struct Slot {
    uint32_t src = 0;
    bool used = false;
    uint64_t tokens = 0;  // millionths of a token
    uint64_t last_ns = 0;
  };
  static size_t index(core::Be32 src) noexcept {
    // Fibonacci hashing: pods of one node differ in the low bits.
    return (uint32_t{src.raw} * 2654435769u) >> 24;
  }

  uint32_t per_second_;
  uint32_t burst_;
  std::array<Slot, kSlots> slots_{};
};

}  // namespace udpring::encap
