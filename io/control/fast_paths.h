#pragma once
// Which of the data plane's fast paths a daemon asked for and which it got.
// Start-up probes and self-tests may refuse one (logged where that happens);
// during traffic a worker may give up GSO or zero copy for good (counted by
// the worker, logged here by the control thread, since workers do not log).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/worker_stats.h"

namespace udpring::io {

struct FastPath {
  std::string name;  // metric label: "gso", "tun_offload", ...
  bool requested;    // asked for by the flags
  bool on;           // in use since start
};

/// Prometheus text: udpring_fast_path{path} (1 in use, 0 not) and
/// udpring_fast_path_refused{path} (1: asked for, refused at start).
std::string render_fast_paths(const std::vector<FastPath>& paths);

/// Logs each worker's first GSO fallback (EIO) and zero-copy fallback
/// (EMSGSIZE) once, from the counters the workers keep. Control thread only.
class RuntimeFallbackLog {
 public:
  explicit RuntimeFallbackLog(size_t workers) : seen_(workers) {}
  void check(const std::vector<std::unique_ptr<core::WorkerStats>>& stats);

 private:
  struct Seen {
    bool gso = false;
    bool send_zc = false;
  };
  std::vector<Seen> seen_;
};

}  // namespace udpring::io
