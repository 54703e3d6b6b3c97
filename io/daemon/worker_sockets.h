#pragma once
// The workers' UDP sockets: one per worker in a SO_REUSEPORT group on
// Backend.Port, and with 2+ workers one per worker to send from (see
// io/kernel/port_steering.h for why and how they are numbered).

#include <vector>

#include "core/be32.h"
#include "core/unique_fd.h"
#include "io/daemon/options.h"

namespace udpring::io {

struct WorkerSockets {
  std::vector<core::UniqueFd> udp;
  std::vector<core::UniqueFd> send;  // empty fds: send from `udp`
  bool steered = false;              // the port steering program is attached
};

/// Opens them on addr:port as the flags ask, falling back (with a warning)
/// where the kernel refuses steering or no run of ports is free. Throws
/// std::system_error naming the socket call that failed.
WorkerSockets open_worker_sockets(const Options& opts, core::Be32 addr, uint16_t port,
                                  unsigned n_workers);

}  // namespace udpring::io
