#include "io/control/fast_paths.h"

#include <spdlog/spdlog.h>

namespace udpring::io {

std::string render_fast_paths(const std::vector<FastPath>& paths) {
  std::string out =
      "# HELP udpring_fast_path Fast paths in use since start (1) or not (0).\n"
      "# TYPE udpring_fast_path gauge\n";
  for (const FastPath& p : paths) {
    out += "udpring_fast_path{path=\"" + p.name + "\"} " + (p.on ? "1" : "0") + "\n";
  }
  out +=
      "# HELP udpring_fast_path_refused Fast paths the flags asked for but the kernel or a "
      "start-up self-test refused (the log says why).\n"
      "# TYPE udpring_fast_path_refused gauge\n";
  for (const FastPath& p : paths) {
    out += "udpring_fast_path_refused{path=\"" + p.name + "\"} " +
           (p.requested && !p.on ? "1" : "0") + "\n";
  }
  return out;
}

void RuntimeFallbackLog::check(const std::vector<std::unique_ptr<core::WorkerStats>>& stats) {
  for (size_t w = 0; w < stats.size() && w < seen_.size(); ++w) {
    Seen& s = seen_[w];
    if (!s.gso && stats[w]->get(core::Counter::kGsoFallback) > 0) {
      s.gso = true;
      spdlog::warn("worker {}: a UDP GSO send failed with EIO (the egress device cannot "
                   "checksum-offload it); GSO off on this worker, its trains resent one "
                   "datagram per sendmsg (counter gso_fallback)",
                   w);
    }
    if (!s.send_zc && stats[w]->get(core::Counter::kSendZcFallback) > 0) {
      s.send_zc = true;
      spdlog::warn("worker {}: a zero-copy send was refused with EMSGSIZE (a GSO train spans more "
                   "page fragments than the kernel takes); zero copy off on this worker, the "
                   "train resent copied (counter send_zc_fallback)",
                   w);
    }
  }
}

}  // namespace udpring::io
