#pragma once
// The health and metrics endpoints: a small HTTP/1.0 server on its own
// thread, off the data path. GET /healthz (always 200 while the daemon
// runs), /readyz (503 until ready, then 200), /metrics (Prometheus text).

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "core/be32.h"
#include "core/unique_fd.h"

namespace udpring::io {

class HttpServer {
 public:
  /// Binds addr:port (port 0 picks a free one, see port()) and starts
  /// serving. `metrics` renders the /metrics body on the server thread.
  /// Throws std::system_error naming the address.
  HttpServer(core::Be32 addr, uint16_t port, std::function<std::string()> metrics);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const noexcept { return port_; }
  /// /readyz answers 200 from now on.
  void set_ready() noexcept { ready_.store(true, std::memory_order_release); }

 private:
  void serve() noexcept;
  void answer(int client) noexcept;

  core::UniqueFd listen_;
  core::UniqueFd wake_;  // eventfd: tells the thread to stop
  uint16_t port_ = 0;
  std::function<std::string()> metrics_;
  std::atomic<bool> ready_{false};
  std::thread thread_;
};

}  // namespace udpring::io
