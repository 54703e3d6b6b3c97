#pragma once
// Per-worker counters. Each WorkerStats is written by exactly one worker and
// read by the control thread, so a relaxed load + store replaces an atomic
// read-modify-write (no lock prefix on the hot path); readers sum the workers.

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/completion_errors.h"

namespace udpring::core {

/// Every counter a worker keeps. Drops are counted by reason; a packet is
/// counted in exactly one drop reason or in the matching tx counter.
enum class Counter : uint8_t {
  kTunRxPackets,      // packets read from the TUN
  kTunRxBytes,
  kUdpTxPackets,      // datagrams handed to the kernel for a peer
  kUdpTxBytes,
  kUdpRxPackets,      // datagrams received on the UDP socket
  kUdpRxBytes,
  kTunTxPackets,      // packets written into the TUN
  kTunTxBytes,
  kIcmpUnreachSent,   // ICMP destination unreachable (net, fragmentation needed) written into the TUN
  kIcmpTimeExceededSent,  // ICMP time-exceeded sent (into the TUN, or to the sender's node)
  kIcmpRateLimited,   // ICMP errors not sent: their source had used up --icmp-rate/--icmp-burst
  kDropBadHeaderTun,  // TUN packet not a valid IPv4 packet
  kDropBadHeaderUdp,  // datagram payload not a valid IPv4 packet
  kDropNoRoute,       // TUN packet for an address with no peer
  kDropTtlExpired,    // TTL would reach 0 (either direction)
  kDropTooBig,        // DF set and more than the path to its peer carries (Fragmentation Needed)
  kDropTruncated,     // datagram larger than the receive buffer (MSG_TRUNC), or GRO pieces past 64
  kDropUnknownPeer,   // datagram from an address that is no known peer
  kDropInnerDstNotLocal,  // datagram from a peer whose inner destination is not ours
  kDropInnerSrcNotPeer,   // datagram from a peer whose inner source is not its lease's
  kDropSendError,     // sendmsg to a peer failed
  kDropTunWriteError, // write into the TUN failed
  kNoBuffer,          // a buffer ring ran dry (multishot ended with ENOBUFS)
  kMultishotRearm,    // a multishot request ended and was armed again
  kGsoSends,          // sendmsg calls that carried more than one datagram
  kGsoFallback,       // GSO sends that failed with EIO and were resent singly
  kGroReceives,       // receives that carried more than one datagram (UDP_GRO)
  kTsoReads,          // TUN reads that carried a TSO super-packet (split in place)
  kCoalescedWrites,   // TUN writes that merged several TCP segments
  kCoalesceChecksumFailures,  // TCP segments not merged because their checksum failed
  kSendZcFallback,    // zero-copy sends refused (EMSGSIZE); zero copy then turned off
  kSpinHits,          // busy-poll spins that found completions (no sleep needed)
  kSpinMisses,        // busy-poll spins that found nothing and went to sleep
  kSpinDearHits,      // spin hits that waited longer than a sleep would have cost
  kLastSendErrno,     // errno of the most recent failed send (a gauge; 0 = none)
  kCount
};

inline constexpr size_t kCounterCount = static_cast<size_t>(Counter::kCount);

/// Names as printed in stats lines and metrics, in Counter order.
inline constexpr std::array<std::string_view, kCounterCount> kCounterNames = {
    "tun_rx_packets",   "tun_rx_bytes",      "udp_tx_packets",       "udp_tx_bytes",
    "udp_rx_packets",   "udp_rx_bytes",      "tun_tx_packets",       "tun_tx_bytes",
    "icmp_unreach_sent", "icmp_time_exceeded_sent", "icmp_rate_limited", "drop_bad_header_tun", "drop_bad_header_udp", "drop_no_route",
    "drop_ttl_expired", "drop_too_big",      "drop_truncated",    "drop_unknown_peer",
    "drop_inner_dst_not_local", "drop_inner_src_not_peer", "drop_send_error",
    "drop_tun_write_error", "no_buffer",     "multishot_rearm",      "gso_sends",
    "gso_fallback",     "gro_receives",      "tso_reads",            "coalesced_writes",
    "coalesce_checksum_failures", "send_zc_fallback", "spin_hits",   "spin_misses",
    "spin_dear_hits",   "last_send_errno"};

struct alignas(64) WorkerStats {
  std::array<std::atomic<uint64_t>, kCounterCount> values{};
  // Error completions by op and errno (core/completion_errors.h).
  std::array<std::atomic<uint64_t>, kCompletionOps * kErrnoSlots> errors{};

  /// Owner-only increment: relaxed load + store, no read-modify-write.
  void add(Counter c, uint64_t n = 1) noexcept {
    auto& v = values[static_cast<size_t>(c)];
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  /// Owner-only store of a gauge.
  void set(Counter c, uint64_t v) noexcept {
    values[static_cast<size_t>(c)].store(v, std::memory_order_relaxed);
  }
  uint64_t get(Counter c) const noexcept {
    return values[static_cast<size_t>(c)].load(std::memory_order_relaxed);
  }
  /// Owner-only: counts one error completion of `op` with errno `err`.
  void add_error(CompletionOp op, int err) noexcept {
    auto& v = errors[error_index(op, errno_slot(err))];
    v.store(v.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  uint64_t errors_of(CompletionOp op, size_t slot) const noexcept {
    return errors[error_index(op, slot)].load(std::memory_order_relaxed);
  }
  static constexpr size_t error_index(CompletionOp op, size_t slot) noexcept {
    return static_cast<size_t>(op) * kErrnoSlots + slot;
  }
};

/// A plain sum of all workers' counters at one moment (each value is exact,
/// the set is not an atomic snapshot, which is fine for monitoring).
struct StatsTotals {
  std::array<uint64_t, kCounterCount> values{};
  std::array<uint64_t, kCompletionOps * kErrnoSlots> errors{};
  uint64_t operator[](Counter c) const noexcept { return values[static_cast<size_t>(c)]; }
  uint64_t errors_of(CompletionOp op, size_t slot) const noexcept {
    return errors[WorkerStats::error_index(op, slot)];
  }
};

inline StatsTotals sum_stats(std::span<const WorkerStats* const> workers) noexcept {
  StatsTotals t;
  for (const WorkerStats* w : workers) {
    for (size_t i = 0; i < kCounterCount; ++i) {
      const uint64_t v = w->values[i].load(std::memory_order_relaxed);
      // Gauges are not additive; any worker's errno will do.
      t.values[i] = i == static_cast<size_t>(Counter::kLastSendErrno) ? std::max(t.values[i], v)
                                                                         : t.values[i] + v;
    }
    for (size_t i = 0; i < t.errors.size(); ++i) t.errors[i] += w->errors[i].load(std::memory_order_relaxed);
  }
  return t;
}

/// "name=value name=value ..." in Counter order, for the SIGUSR1/exit dump.
inline std::string format_stats(const StatsTotals& t) {
  std::string out;
  for (size_t i = 0; i < kCounterCount; ++i) {
    if (i) out += ' ';
    out += kCounterNames[i];
    out += '=';
    out += std::to_string(t.values[i]);
  }
  for (size_t op = 0; op < kCompletionOps; ++op) {
    for (size_t slot = 0; slot < kErrnoSlots; ++slot) {
      const uint64_t n = t.errors_of(static_cast<CompletionOp>(op), slot);
      if (n == 0) continue;
      out += " error_";
      out += completion_op_name(static_cast<CompletionOp>(op));
      out += '_';
      out += errno_slot_name(slot);
      out += '=';
      out += std::to_string(n);
    }
  }
  return out;
}

}  // namespace udpring::core
