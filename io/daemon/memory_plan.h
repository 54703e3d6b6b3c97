#pragma once
// What udpringd will take at peak with the workers and buffers it was given,
// and the warning at start when that is more than its memory limit: the
// cgroup's memory.max when one is set, else what a DaemonSet typically
// allows. A limit set too low shows up as an OOM kill under load, long after
// start, with nothing in the log to say why.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "io/daemon/options.h"
#include "io/dataplane/worker.h"

namespace udpring::io {

/// The process without its workers, measured with one worker under load
/// (23 MiB at peak, less the worker's 11 MiB plan): mostly the shared libraries'
/// pages (libc, libstdc++, libcrypto, gnutls: about 11 MiB), then the
/// control thread, the health server and a small cluster's routes.
inline constexpr size_t kBaseBytes = size_t{13} << 20;
/// kube-flannel's manifest requests 50Mi for flanneld; a limit near it is
/// common. Above this the start-up log warns even without a cgroup limit.
inline constexpr size_t kTypicalLimitBytes = size_t{64} << 20;

struct MemoryPlan {
  unsigned workers = 0;
  size_t per_worker = 0;  // Worker::peak_bytes
  size_t total = 0;       // kBaseBytes + workers * per_worker
};

/// Worker options with the sizes the memory depends on taken from the flags
/// and a buffer plan (ring entries, buffer counts and bytes, TUN offload);
/// the daemon fills in the rest.
WorkerOptions sized_worker_options(const Options& o, const BufferPlan& b, bool vnet);

MemoryPlan plan_memory(const WorkerOptions& w, unsigned workers);
/// The same from the flags and a buffer plan, before any worker options
/// exist (--print-config); `vnet`: the TUN has offloads.
MemoryPlan plan_memory(const Options& o, const BufferPlan& b, bool vnet, unsigned workers);

/// The memory.max of the cgroup v2 that `proc_self_cgroup` (the text of
/// /proc/self/cgroup) names, read under `cgroup_root`; nullopt when there is
/// none, it says "max", or it cannot be read.
std::optional<uint64_t> cgroup_memory_limit(const std::string& proc_self_cgroup,
                                            const std::string& cgroup_root = "/sys/fs/cgroup");

/// "" when `plan` fits under `limit` (or, without one, kTypicalLimitBytes);
/// else one line naming the need, the limit and the flags that lower it.
/// `w` gives the flags' current values.
std::string memory_warning(const MemoryPlan& plan, const WorkerOptions& w,
                           std::optional<uint64_t> limit);

/// "12.5 MiB".
std::string format_mib(size_t bytes);

}  // namespace udpring::io
