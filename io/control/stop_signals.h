#pragma once
// The daemon blocks SIGINT and SIGTERM in every thread and takes them with
// sigtimedwait on the control thread. A call that may wait (an etcd or API
// request, an iptables child) asks here whether one has arrived meanwhile,
// and gives up, so that start-up ends promptly when told to stop.

#include <signal.h>

namespace udpring::io {

/// True if a signal in `which` is pending for this thread or the process.
inline bool stop_signal_pending(const sigset_t& which) noexcept {
  sigset_t pending;
  if (sigpending(&pending) != 0) return false;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sigismember(&which, sig) == 1 && sigismember(&pending, sig) == 1) return true;
  }
  return false;
}

}  // namespace udpring::io
