#pragma once
// The health and metrics endpoints: GET /healthz (always 200 while the
// daemon runs), /readyz (503 until ready, then 200), /metrics (Prometheus
// text). HTTP is libmicrohttpd's, driven from a thread of our own, off the
// data path; no client can stall it: connections are served side by side
// (epoll), each is closed after an idle timeout and after a lifetime however
// it trickles, their number is capped in all and per source address, and a
// request is its line and headers in a small fixed budget, never a body.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "core/be32.h"
#include "core/unique_fd.h"

struct MHD_Daemon;

namespace udpring::io {

/// What one client may take of the server. The defaults are the daemon's.
struct HttpLimits {
  /// A connection on which nothing arrives for this long is closed (whole
  /// seconds: libmicrohttpd's unit).
  std::chrono::seconds idle{2};
  /// No connection lives longer than this after it was accepted, whatever it
  /// sends: a client that trickles a byte at a time never goes idle.
  std::chrono::milliseconds lifetime{5000};
  /// Connections open at once; 0: half the soft RLIMIT_NOFILE, at most 1024,
  /// so that clients never take the descriptors the daemon needs.
  unsigned connections = 0;
  /// Connections open at once from one source address; 0: a quarter of
  /// `connections`, so that one host cannot lock the probes out.
  unsigned per_address = 0;
};

class HttpServer {
 public:
  /// Binds addr:port (port 0 picks a free one, see port()) and starts
  /// serving. `metrics` renders the /metrics body on the server thread, one
  /// call at a time. Throws std::system_error naming the address.
  HttpServer(core::Be32 addr, uint16_t port, std::function<std::string()> metrics,
             HttpLimits limits = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const noexcept { return port_; }
  /// /readyz answers 200 from now on.
  void set_ready() noexcept { ready_.store(true, std::memory_order_release); }
  /// Back to 503, for good: the daemon is about to exit.
  void set_not_ready() noexcept { ready_.store(false, std::memory_order_release); }
  /// The limits in force, defaults resolved.
  const HttpLimits& limits() const noexcept { return limits_; }
  /// Connections open now (accepted and not yet closed).
  size_t connections() const noexcept { return open_.load(std::memory_order_relaxed); }

 private:
  using Clock = std::chrono::steady_clock;
  // An open connection's fd and the end of its lifetime.
  struct Open {
    int fd;
    Clock::time_point deadline;
    bool shut = false;  // shutdown() done; libmicrohttpd closes it next
  };
  struct StopDaemon {
    void operator()(MHD_Daemon* d) const noexcept;
  };

  struct Hooks;  // libmicrohttpd's callbacks, with its types, in the .cc

  void serve(int epoll_fd) noexcept;
  int wait_ms(Clock::time_point now) noexcept;
  void close_overdue(Clock::time_point now) noexcept;

  uint16_t port_ = 0;
  HttpLimits limits_;
  std::function<std::string()> metrics_;
  std::atomic<bool> ready_{false};
  // Relaxed: a count for readers to look at, publishing nothing.
  std::atomic<size_t> open_{0};
  // Server thread only. Keyed by accept order, which is deadline order, so
  // the first is the next to expire; a connection's key is its context.
  std::map<uint64_t, Open> open_by_id_;
  uint64_t next_id_ = 0;
  std::string start_error_;  // what libmicrohttpd logged while starting
  bool started_ = false;
  bool closed_ = false;  // a run of libmicrohttpd closed a connection
  core::UniqueFd wake_;  // eventfd: tells the thread to stop
  std::unique_ptr<MHD_Daemon, StopDaemon> daemon_;
  std::thread thread_;
};

}  // namespace udpring::io
