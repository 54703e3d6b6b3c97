#pragma once
// The control thread's loop once the daemon is up: lease events become
// routes, signals are handled, the lease is renewed, iptables rules are
// kept, workers are watched, ICMP errors about our datagrams are counted
// (and a router's path MTU becomes the peer's limit) and old route tables
// are freed. Nothing in a turn waits for a server or a child process:
// renewals and the kube Node condition run on the store's threads, the
// iptables check on a thread of its own, so lease events and signals are
// handled within a turn (at most
// 250 ms waiting for events, plus the route rebuild).

#include <signal.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "core/peer_routes.h"
#include "core/route_table.h"
#include "core/worker_stats.h"
#include "io/control/fast_paths.h"
#include "io/control/iptables_rules.h"
#include "io/control/leases/lease_store.h"
#include "io/control/peer_icmp_watch.h"
#include "io/daemon/daemon_status.h"
#include "io/daemon/handover.h"
#include "io/daemon/options.h"
#include "io/dataplane/worker.h"

namespace udpring::io {

/// What the loop drives; the daemon owns all of it.
struct ControlPlane {
  const Options& opts;
  const sigset_t& sigs;                 // blocked SIGINT, SIGTERM, SIGUSR1
  LeaseStore* store;                    // null in static mode
  core::PeerRoutes& peer_routes;
  core::RouteTable& table;
  const std::vector<std::unique_ptr<Worker>>& workers;
  const std::vector<std::unique_ptr<core::WorkerStats>>& stats;
  IptablesManager* iptables;            // null without rules
  DaemonStatus& status;
  RuntimeFallbackLog& fallbacks;        // checked every turn, and once more after the stop
  std::function<void()> not_ready;      // /readyz to 503 (empty without a health server)
  std::function<void()> ready_again;    // /readyz back to 200 (empty without one)
  PeerIcmpWatch* icmp_watch;            // null without CAP_NET_RAW
  HandoverListener* handover;           // null without --keep-tun
  std::optional<Successor>& successor;  // set when one asked: the loop then ends (0)
};

/// Runs until SIGINT/SIGTERM or a successor's request (returns 0), our lease is revoked or a worker
/// fails (1). A control-plane exception is logged and returns 1: the
/// caller still stops the workers.
int run_control_loop(const ControlPlane& cp);

/// Logs the summed counters as one "stats (WHEN): ..." line.
void log_stats(const std::vector<std::unique_ptr<core::WorkerStats>>& stats, const char* when);

}  // namespace udpring::io
