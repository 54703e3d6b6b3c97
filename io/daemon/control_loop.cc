#include "io/daemon/control_loop.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "io/daemon/periodic_task.h"

namespace udpring::io {
namespace {

// Lease events (waiting up to 250 ms for the first), gathered for up to
// kSettle after it and applied with one route-table rebuild; false when our
// own lease was revoked. The settle time bounds the rebuilds of a burst (a
// rollout touching every Node: 5,000 routes take ~1 ms to rebuild) at the
// cost of that much latency for a single change.
constexpr auto kSettle = std::chrono::milliseconds(20);

bool apply_lease_events(const ControlPlane& cp) {
  std::vector<core::LeaseUpdate> batch(1);
  std::string lost;
  if (cp.store->wait_update(std::chrono::milliseconds(250), batch.back())) {
    const auto until = std::chrono::steady_clock::now() + kSettle;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      batch.emplace_back();
      if (!cp.store->wait_update(std::max(left, std::chrono::milliseconds(0)), batch.back())) {
        batch.pop_back();
        break;
      }
    }
    lost = cp.peer_routes.apply(batch).own_lost;
  }
  cp.status.set_routes(cp.peer_routes.route_count());
  cp.status.set_lease_refusals(cp.peer_routes.refused_total(), cp.peer_routes.refused_now());
  if (!lost.empty()) {
    spdlog::critical("{}: lease has been revoked, shutting down (as flanneld)", lost);
    return false;
  }
  // maintain() returns at once: renewals and the kube condition run on the
  // store's own thread (the first call starts it).
  cp.store->maintain();
  cp.status.set_lease(cp.store->status());
  return true;
}

// A worker stops only on an error it cannot go on from (the TUN deleted):
// /readyz says so at once, and the daemon exits non-zero for a restart. When
// every worker hit the same error, it is logged once.
bool any_worker_failed(const ControlPlane& cp) {
  std::string last;
  for (size_t i = 0; i < cp.workers.size(); ++i) {
    const auto& w = cp.workers[i];
    if (w->state() != WorkerState::kFailed) continue;
    if (last.empty() && cp.not_ready) {
      cp.not_ready();
      spdlog::warn("/readyz answers 503 from now on: a worker stopped");
    }
    if (w->error() != last) spdlog::critical("worker {} failed: {}", i, w->error());
    last = w->error();
  }
  return !last.empty();
}

// On the resync thread (PeriodicTask): the manager serializes its runs, and
// what it publishes is atomic.
void resync_rules(const ControlPlane& cp) {
  try {
    cp.iptables->resync();  // logs what was missing when it rebuilds
  } catch (const IptablesStopped&) {
    return;  // the daemon is stopping: the rules stay, as on any exit
  } catch (const std::exception& e) {
    spdlog::warn("iptables resync failed: {}; trying again in {} s", e.what(),
                 cp.opts.iptables_resync_s);
  }
  cp.status.set_iptables_rebuilds(cp.iptables->rebuilds());
}

// While a successor sets up, probes of the node's health port reach us:
// answering 503 keeps them from calling the new pod ready before it has the
// data path.
void track_successor(const ControlPlane& cp, bool& starting) {
  if (cp.handover->successor_starting() == starting) return;
  starting = !starting;
  if (starting) {
    if (cp.not_ready) cp.not_ready();
    spdlog::info("a successor is setting up: /readyz answers 503 until it takes over");
  } else {
    if (cp.ready_again) cp.ready_again();
    spdlog::info("the successor went away without taking over: /readyz answers 200 again");
  }
}

}  // namespace

void log_stats(const std::vector<std::unique_ptr<core::WorkerStats>>& stats, const char* when) {
  std::vector<const core::WorkerStats*> ptrs;
  for (const auto& s : stats) ptrs.push_back(s.get());
  spdlog::info("stats ({}): {}", when, core::format_stats(core::sum_stats(ptrs)));
}

int run_control_loop(const ControlPlane& cp) {
  // Nothing on this thread waits for iptables: one check may take seconds
  // on a node with kube-proxy's rules.
  std::optional<PeriodicTask> resync;
  if (cp.iptables) {
    resync.emplace(std::chrono::seconds(cp.opts.iptables_resync_s), [&cp] { resync_rules(cp); });
  }
  const timespec no_wait{0, 0};
  // Static mode has no lease events to wait on; the tick bounds how long a
  // failed worker goes unnoticed (lease events wait at most 250 ms too).
  const timespec tick{0, 250'000'000};
  int exit_code = 0;
  bool successor_starting = false;
  try {
    for (;;) {
      if (cp.store && !apply_lease_events(cp)) {
        exit_code = 1;
        break;
      }
      const int sig = sigtimedwait(&cp.sigs, nullptr, cp.store ? &no_wait : &tick);
      if (sig == SIGUSR1) {
        log_stats(cp.stats, "SIGUSR1");
      } else if (sig == SIGINT || sig == SIGTERM) {
        spdlog::info("{} received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
      }
      if (cp.handover) {
        if (std::optional<Successor> s = cp.handover->poll()) {
          spdlog::info("udpringd pid {} asks to take over the data path", s->pid());
          cp.successor = std::move(s);
          break;
        }
        track_successor(cp, successor_starting);
      }
      if (any_worker_failed(cp)) {
        exit_code = 1;
        break;
      }
      cp.fallbacks.check(cp.stats);
      if (cp.icmp_watch) {
        if (cp.icmp_watch->drain()) cp.status.set_peer_unreachable(cp.icmp_watch->counts());
        if (cp.icmp_watch->apply_path_limits(cp.table)) cp.table.publish();
      }
      cp.table.reclaim();
    }
  } catch (const std::exception& e) {
    spdlog::critical("control thread: {}; stopping", e.what());
    exit_code = 1;
  }
  return exit_code;
}

}  // namespace udpring::io
