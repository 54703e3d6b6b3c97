#pragma once
// The daemon's wiring: configuration, network setup, workers, signals.

#include "io/daemon/options.h"

namespace udpring::io {

/// Runs udpringd until SIGINT/SIGTERM. Returns the process exit code: 0 after
/// a clean stop, 1 when setup failed or a worker died (already logged).
int run_daemon(const Options& opts);

}  // namespace udpring::io
