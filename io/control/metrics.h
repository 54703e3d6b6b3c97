#pragma once
// The Prometheus text of /metrics: the workers' counters summed (drops as
// one family labelled by reason), the daemon's gauges, the fast paths and
// the lease store's health. Rendered on the HTTP server's thread.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/input_errors.h"
#include "core/lease.h"
#include "core/lease_policy.h"
#include "core/worker_stats.h"
#include "io/control/fast_paths.h"
#include "io/control/peer_icmp_watch.h"

namespace udpring::io {

/// Per core::LeaseRefusal.
using LeaseRefusalCounts = std::array<uint64_t, core::kLeaseRefusalCount>;

/// What one scrape shows besides the counters; the caller reads it from
/// wherever it lives (atomics, the store's last status) just before.
struct MetricsInput {
  size_t routes = 0;
  uint64_t iptables_rebuilds = 0;
  std::optional<core::LeaseStoreStatus> lease;  // none in static mode
  std::optional<uint64_t> tun_flows_placed;     // none without TUN steering
  LeaseRefusalCounts leases_refused_total{};    // refusals so far (core::PeerRoutes)
  LeaseRefusalCounts leases_refused_now{};      // leases refused at the moment
  std::array<uint64_t, core::kInputSourceCount> input_errors{};  // by core::InputSource
  std::optional<PeerUnreachCounts> peer_unreachable;  // none without the raw ICMP socket
};

/// udpring_control_input_errors_total, one sample per source; also served
/// before the daemon is ready (it may be why it is not).
std::string render_input_errors(const std::array<uint64_t, core::kInputSourceCount>& counts);

/// `version` is udpring_build_info's label.
std::string render_metrics(const std::vector<std::unique_ptr<core::WorkerStats>>& stats,
                           const MetricsInput& in, const std::vector<FastPath>& fast_paths,
                           const std::string& version);

}  // namespace udpring::io
