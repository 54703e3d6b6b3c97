#pragma once
// flanneld retries the config (and the lease) every second until they work;
// so does udpringd, for whatever a lease store may fail with for a while.

#include <signal.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <string>
#include <string_view>

namespace udpring::io {

/// Calls `attempt` until it returns without throwing `Error`, waiting a
/// second between tries for SIGINT/SIGTERM (which must be blocked and in
/// `sigs`). Each distinct error is logged once. Returns false when told to
/// stop; any other exception passes through.
template <class Error, class Attempt>
bool retry_every_second(const sigset_t& sigs, std::string_view what, Attempt&& attempt) {
  std::string last_error;
  for (;;) {
    try {
      attempt();
      return true;
    } catch (const Error& e) {
      if (e.what() != last_error) spdlog::error("{}: {}; retrying every second", what, e.what());
      last_error = e.what();
    }
    const timespec second{1, 0};
    const int sig = sigtimedwait(&sigs, nullptr, &second);
    if (sig == SIGINT || sig == SIGTERM) return false;
  }
}

}  // namespace udpring::io
