#include "io/control/metrics.h"

#include <algorithm>
#include <string_view>

#include "core/ipv4_addr.h"

namespace udpring::io {

std::string render_input_errors(const std::array<uint64_t, core::kInputSourceCount>& counts) {
  std::string out =
      "# HELP udpring_control_input_errors_total Control-plane input rejected (a wrong JSON type, "
      "too big, nested too deep, not a regular file), by source; each was skipped or retried.\n"
      "# TYPE udpring_control_input_errors_total counter\n";
  for (size_t i = 0; i < core::kInputSourceCount; ++i) {
    out.append("udpring_control_input_errors_total{source=\"")
        .append(core::kInputSourceNames[i])
        .append("\"} ")
        .append(std::to_string(counts[i]))
        .append("\n");
  }
  return out;
}

std::string render_metrics(const std::vector<std::unique_ptr<core::WorkerStats>>& stats,
                           const MetricsInput& in, const std::vector<FastPath>& fast_paths,
                           const std::string& version) {
  std::vector<const core::WorkerStats*> ptrs;
  for (const auto& s : stats) ptrs.push_back(s.get());
  const core::StatsTotals t = core::sum_stats(ptrs);
  std::string out;
  // One unlabelled metric family: HELP, TYPE and the sample.
  auto family = [&out](const char* name, const char* type, const char* help, uint64_t value) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
    out.append(name).append(" ").append(std::to_string(value)).append("\n");
  };
  out += "# HELP udpring_build_info udpringd version.\n# TYPE udpring_build_info gauge\n";
  out += "udpring_build_info{version=\"" + version + "\"} 1\n";
  family("udpring_workers", "gauge", "Forwarding workers.", stats.size());
  family("udpring_routes", "gauge", "Peer routes installed.", in.routes);
  family("udpring_iptables_rebuilds_total", "counter",
         "Rule sets rebuilt after a rule went missing.", in.iptables_rebuilds);
  out += render_fast_paths(fast_paths);
  if (in.tun_flows_placed) {
    family("udpring_tun_flows_placed_total", "counter",
           "Flows the TUN steering program placed on the next queue in turn.",
           *in.tun_flows_placed);
  }
  out += render_input_errors(in.input_errors);
  if (const auto& lease = in.lease) {
    family("udpring_lease_expiry_timestamp_seconds", "gauge",
           "When our lease expires, in Unix seconds (0: never, a reservation).",
           static_cast<uint64_t>(std::max<int64_t>(0, lease->own_expiry_unix)));
    family("udpring_lease_renewals_total", "counter", "Renewals of our lease.", lease->renewals);
    family("udpring_lease_renew_failures_total", "counter", "Renewals that failed (retried).",
           lease->renew_failures);
    family("udpring_lease_watch_reconnects_total", "counter",
           "Lease watch streams re-established after an error.", lease->watch_reconnects);
    family("udpring_lease_relists_total", "counter",
           "Full lease re-lists (etcd compaction, Kubernetes 410 Expired or resync).", lease->relists);
    family("udpring_lease_watch_connected", "gauge", "1 while the lease watch is connected.",
           lease->watch_connected ? 1 : 0);
  }
  if (const auto& pu = in.peer_unreachable) {
    out += "# HELP udpring_peer_unreachable_total ICMP Destination Unreachable about our datagrams "
           "to a peer, by peer and reason.\n# TYPE udpring_peer_unreachable_total counter\n";
    auto samples = [&out](const std::string& peer, const auto& counts) {
      for (size_t r = 0; r < counts.size(); ++r) {
        if (counts[r] == 0) continue;
        out.append("udpring_peer_unreachable_total{peer=\"").append(peer).append("\",reason=\"");
        out.append(encap::peer_unreach_name(static_cast<encap::PeerUnreach>(r)));
        out.append("\"} ").append(std::to_string(counts[r])).append("\n");
      }
    };
    for (const auto& [peer, counts] : pu->by_peer) {
      samples(core::format_ipv4(core::Be32::from_host(peer)), counts);
    }
    samples("other", pu->others);
  }
  // Every reason is listed, also at 0, so an alert can rate() each one.
  auto by_refusal = [&out](const char* name, const char* type, const char* help,
                           const LeaseRefusalCounts& n) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
    for (size_t i = 0; i < n.size(); ++i) {
      out.append(name).append("{reason=\"");
      out.append(core::refusal_name(static_cast<core::LeaseRefusal>(i)));
      out.append("\"} ").append(std::to_string(n[i])).append("\n");
    }
  };
  by_refusal("udpring_leases_refused_total", "counter",
             "Leases refused as routes (each lease once per distinct refusal), by reason.",
             in.leases_refused_total);
  by_refusal("udpring_leases_refused_current", "gauge", "Leases refused as routes now, by reason.",
             in.leases_refused_now);
  out += "# HELP udpring_drops_total Packets dropped, by reason.\n# TYPE udpring_drops_total counter\n";
  for (size_t i = 0; i < core::kCounterCount; ++i) {
    const std::string_view name = core::kCounterNames[i];
    if (name.substr(0, 5) == "drop_") {
      out.append("udpring_drops_total{reason=\"").append(name.substr(5)).append("\"} ");
      out += std::to_string(t.values[i]) + "\n";
    }
  }
  for (size_t i = 0; i < core::kCounterCount; ++i) {
    const std::string_view name = core::kCounterNames[i];
    if (name.substr(0, 5) == "drop_") continue;
    const bool gauge = i == static_cast<size_t>(core::Counter::kLastSendErrno);
    std::string metric = "udpring_" + std::string(name) + (gauge ? "" : "_total");
    out += "# TYPE " + metric + (gauge ? " gauge\n" : " counter\n");
    out += metric + " " + std::to_string(t.values[i]) + "\n";
  }
  // Error completions, by the request they ended and errno, with what the
  // worker made of each (core/completion_errors.h); only those seen.
  out += "# HELP udpring_completion_errors_total io_uring completions that failed, by op, errno "
         "and class.\n# TYPE udpring_completion_errors_total counter\n";
  for (size_t op = 0; op < core::kCompletionOps; ++op) {
    for (size_t slot = 0; slot < core::kErrnoSlots; ++slot) {
      const auto o = static_cast<core::CompletionOp>(op);
      const uint64_t n = t.errors_of(o, slot);
      if (n == 0) continue;
      const bool named = slot + 1 < core::kErrnoSlots;
      out.append("udpring_completion_errors_total{op=\"").append(core::completion_op_name(o));
      out.append("\",errno=\"").append(core::errno_slot_name(slot)).append("\",class=\"");
      out.append(named ? core::error_class_name(core::classify_completion_error(o, core::kCountedErrnos[slot]))
                       : std::string_view("unknown"));
      out.append("\"} ").append(std::to_string(n)).append("\n");
    }
  }
  // Per worker, the counters that show how traffic spreads over them.
  for (const core::Counter c : {core::Counter::kTunRxPackets, core::Counter::kUdpTxPackets,
                                core::Counter::kUdpRxPackets}) {
    const std::string metric =
        "udpring_worker_" + std::string(core::kCounterNames[static_cast<size_t>(c)]) + "_total";
    out += "# TYPE " + metric + " counter\n";
    for (size_t w = 0; w < stats.size(); ++w) {
      out += metric + "{worker=\"" + std::to_string(w) + "\"} " +
             std::to_string(stats[w]->get(c)) + "\n";
    }
  }
  return out;
}

}  // namespace udpring::io
