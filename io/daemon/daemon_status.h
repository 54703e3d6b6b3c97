#pragma once
// What the control thread publishes for the HTTP server's thread to render.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>

#include "core/lease.h"
#include "io/control/metrics.h"

namespace udpring::io {

class DaemonStatus {
 public:
  // Relaxed: each is a value of its own; nothing else is published by them.
  void set_routes(size_t n) noexcept { routes_.store(n, std::memory_order_relaxed); }
  void set_iptables_rebuilds(uint64_t n) noexcept { rebuilds_.store(n, std::memory_order_relaxed); }
  void set_lease_refusals(const LeaseRefusalCounts& total, const LeaseRefusalCounts& now) {
    std::lock_guard lock(mu_);
    refused_total_ = total;
    refused_now_ = now;
  }
  void set_lease(const core::LeaseStoreStatus& s) {
    std::lock_guard lock(mu_);
    lease_ = s;
  }

  void set_peer_unreachable(const PeerUnreachCounts& c) {
    std::lock_guard lock(mu_);
    peer_unreachable_ = c;
  }

  /// The values for one scrape (any thread).
  MetricsInput snapshot() const {
    MetricsInput in;
    in.routes = routes_.load(std::memory_order_relaxed);
    in.iptables_rebuilds = rebuilds_.load(std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    in.lease = lease_;
    in.leases_refused_total = refused_total_;
    in.leases_refused_now = refused_now_;
    in.peer_unreachable = peer_unreachable_;
    return in;
  }

 private:
  std::atomic<size_t> routes_{0};
  std::atomic<uint64_t> rebuilds_{0};
  mutable std::mutex mu_;  // guards what follows: structs, copied whole
  std::optional<core::LeaseStoreStatus> lease_;
  LeaseRefusalCounts refused_total_{};
  LeaseRefusalCounts refused_now_{};
  std::optional<PeerUnreachCounts> peer_unreachable_;  // set once the watch runs
};

}  // namespace udpring::io
