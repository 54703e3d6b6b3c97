#include "io/daemon/memory_plan.h"

#include <charconv>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string_view>

namespace udpring::io {

MemoryPlan plan_memory(const WorkerOptions& w, unsigned workers) {
  MemoryPlan p;
  p.workers = workers;
  p.per_worker = Worker::peak_bytes(w);
  p.total = kBaseBytes + workers * p.per_worker;
  return p;
}

WorkerOptions sized_worker_options(const Options& o, const BufferPlan& b, bool vnet) {
  WorkerOptions w;
  w.ring_entries = o.ring_entries;
  w.tun_buffers = b.tun_count;
  w.udp_buffers = b.udp_count;
  w.tun_buf_bytes = b.tun_bytes;
  w.udp_buf_bytes = b.udp_bytes;
  w.tun_offload = vnet;
  return w;
}

MemoryPlan plan_memory(const Options& o, const BufferPlan& b, bool vnet, unsigned workers) {
  return plan_memory(sized_worker_options(o, b, vnet), workers);
}

std::optional<uint64_t> cgroup_memory_limit(const std::string& proc_self_cgroup,
                                            const std::string& cgroup_root) {
  // cgroup v2 is the line "0::/path"; v1 lines name their controllers.
  std::istringstream lines(proc_self_cgroup);
  std::string line, path;
  bool found = false;
  while (std::getline(lines, line)) {
    if (line.rfind("0::", 0) == 0) {
      path = line.substr(3);
      found = true;
    }
  }
  if (!found || path.find("..") != std::string::npos) return std::nullopt;
  std::ifstream in(cgroup_root + (path == "/" ? "" : path) + "/memory.max");
  std::string text;
  if (!(in >> text) || text == "max") return std::nullopt;
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

std::string format_mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

std::string memory_warning(const MemoryPlan& plan, const WorkerOptions& w,
                           std::optional<uint64_t> limit) {
  const uint64_t bound = limit.value_or(kTypicalLimitBytes);
  if (plan.total <= bound) return {};
  const std::string what =
      limit ? "this cgroup's memory.max of " + format_mib(*limit)
            : format_mib(kTypicalLimitBytes) + ", about what a DaemonSet's memory limit allows";
  return "udpringd may take up to " + format_mib(plan.total) + " under load (" +
         std::to_string(plan.workers) + " worker(s) x " + format_mib(plan.per_worker) +
         " of buffers and tables, plus about " + format_mib(kBaseBytes) + "), more than " + what +
         ": lower --workers (" + std::to_string(plan.workers) + ") or --buffers (" +
         std::to_string(w.tun_buffers) + " per TUN ring, " + std::to_string(w.udp_buffers) +
         " per UDP ring of " + std::to_string(w.tun_buf_bytes) + " / " +
         std::to_string(w.udp_buf_bytes) + " B), or raise the limit";
}

}  // namespace udpring::io
