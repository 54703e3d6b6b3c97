#pragma once
// What the two directions of one worker share: its ring, options, stats and
// the route table, plus the fixed-file and buffer-group numbers both use.
// Worker-only: built by the worker thread, never seen by another.

#include <cstdint>

#include <time.h>

#include "core/completion_errors.h"
#include "encap/busy_poll_policy.h"
#include "encap/icmp_rate_limit.h"

#include "core/route_table.h"
#include "core/worker_stats.h"
#include "io/dataplane/ring.h"
#include "io/dataplane/worker.h"

namespace udpring::io {

// Fixed-file slots registered with the ring.
inline constexpr int kTunFile = 0;
inline constexpr int kUdpFile = 1;
inline constexpr int kSendFile = 2;  // only registered when the worker has a send socket
// Provided-buffer groups.
inline constexpr uint16_t kTunGroup = 0;
inline constexpr uint16_t kUdpGroup = 1;
// IORING_OP_READ_MULTISHOT (Linux 6.7). liburing 2.3's headers predate it.
inline constexpr uint8_t kOpReadMultishot = 49;

struct WorkerContext {
  Ring& ring;
  const WorkerOptions& opts;
  core::WorkerStats& stats;
  const core::RouteTable& routes;
  // What this turn read, from the TUN and from the socket: busy polling
  // judges its spins by it.
  encap::TurnInput turn{};
  // One budget of ICMP errors per source for both directions.
  encap::IcmpRateLimit icmp_limit{opts.icmp_rate, opts.icmp_burst};
  // The first fatal error completion (errno, 0: none): the loop stops at the
  // end of the turn that saw it.
  int fatal_errno = 0;
  core::CompletionOp fatal_op = core::CompletionOp::kTunRead;

  /// Takes a token for an ICMP error about a packet from `src`, or counts
  /// the error as rate-limited. The clock is read only here (vDSO, no
  /// system call), once per error generated.
  bool icmp_allowed(core::Be32 src) noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const uint64_t now = uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
    if (icmp_limit.allow(src, now)) return true;
    stats.add(core::Counter::kIcmpRateLimited);
    return false;
  }

  /// Counts an error completion (`res` < 0) and says what it means; a fatal
  /// one is kept for the loop.
  core::ErrorClass error(core::CompletionOp op, int res) noexcept {
    const int err = -res;
    stats.add_error(op, err);
    const core::ErrorClass c = core::classify_completion_error(op, err);
    if (c == core::ErrorClass::kFatal && fatal_errno == 0) {
      fatal_errno = err;
      fatal_op = op;
    }
    return c;
  }
};

}  // namespace udpring::io
