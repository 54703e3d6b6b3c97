#include "io/control/http_server.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "core/ipv4_addr.h"

namespace udpring::io {
namespace {

void send_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::string response(int code, const char* reason, const std::string& type, const std::string& body) {
  return "HTTP/1.0 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

}  // namespace

HttpServer::HttpServer(core::Be32 addr, uint16_t port, std::function<std::string()> metrics)
    : metrics_(std::move(metrics)) {
  const std::string where = core::format_ipv4(addr) + ":" + std::to_string(port);
  listen_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listen_) throw std::system_error(errno, std::generic_category(), "socket for " + where);
  const int one = 1;
  setsockopt(listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = addr.raw;
  if (bind(listen_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      listen(listen_.get(), 16) != 0) {
    throw std::system_error(errno, std::generic_category(), "listen on healthz " + where);
  }
  socklen_t len = sizeof sa;
  getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  port_ = ntohs(sa.sin_port);
  wake_.reset(eventfd(0, EFD_CLOEXEC));
  if (!wake_) throw std::system_error(errno, std::generic_category(), "eventfd");
  thread_ = std::thread([this] { serve(); });
}

HttpServer::~HttpServer() {
  const uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void HttpServer::serve() noexcept {
  pollfd pfds[2] = {{listen_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
  for (;;) {
    if (poll(pfds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (pfds[1].revents) return;
    if (pfds[0].revents & POLLIN) {
      core::UniqueFd client(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (client) answer(client.get());
    }
  }
}

// One request per connection; a slow or silent client gets 1 s.
void HttpServer::answer(int client) noexcept {
  try {
    timeval tv{1, 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[2048];
    const ssize_t n = recv(client, buf, sizeof buf - 1, 0);
    if (n <= 0) return;
    const std::string req(buf, static_cast<size_t>(n));
    const size_t sp1 = req.find(' ');
    const size_t sp2 = req.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos || req.compare(0, sp1, "GET") != 0) {
      send_all(client, response(405, "Method Not Allowed", "text/plain", "only GET\n"));
      return;
    }
    const std::string path = req.substr(sp1 + 1, sp2 - sp1 - 1);
    if (path == "/healthz") {
      send_all(client, response(200, "OK", "text/plain", "udpringd is running\n"));
    } else if (path == "/readyz") {
      const bool ready = ready_.load(std::memory_order_acquire);
      send_all(client, ready ? response(200, "OK", "text/plain", "ready\n")
                             : response(503, "Service Unavailable", "text/plain", "not ready\n"));
    } else if (path == "/metrics") {
      send_all(client, response(200, "OK", "text/plain; version=0.0.4", metrics_()));
    } else {
      send_all(client, response(404, "Not Found", "text/plain", "try /healthz, /readyz, /metrics\n"));
    }
  } catch (...) {
    // A failed answer (out of memory rendering metrics) only loses that answer.
  }
}

}  // namespace udpring::io
