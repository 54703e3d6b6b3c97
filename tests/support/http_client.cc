#include "tests/support/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace udpring::test {
namespace {

sockaddr_in loopback(const std::string& ip, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) throw std::runtime_error("bad ip " + ip);
  return sa;
}

// Milliseconds left until `end`, at least 0.
int left_ms(std::chrono::steady_clock::time_point end) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

}  // namespace

core::UniqueFd http_connect(const std::string& src_ip, uint16_t port) {
  core::UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  const sockaddr_in src = loopback(src_ip, 0);
  if (bind(s.get(), reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
    throw std::runtime_error("bind " + src_ip + ": " + std::strerror(errno));
  }
  // A server that stops accepting leaves a connect waiting for minutes of
  // SYN retries: give up after 2 s.
  const timeval tv{2, 0};
  setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const sockaddr_in dst = loopback("127.0.0.1", port);
  if (connect(s.get(), reinterpret_cast<const sockaddr*>(&dst), sizeof dst) != 0) {
    const std::string why = errno == EINPROGRESS ? "not accepted within 2 s" : std::strerror(errno);
    throw std::runtime_error("connect " + src_ip + " -> 127.0.0.1:" + std::to_string(port) + ": " + why);
  }
  return s;
}

std::string http_exchange(int fd, const std::string& request, int timeout_ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) break;  // the server closed: read its answer
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, left_ms(end)) <= 0) break;
  }
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left_ms(end)) <= 0) break;
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool closed_by_server(int fd, int timeout_ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = poll(&p, 1, left_ms(end));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return true;  // ECONNRESET
  }
}

int http_status(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12 || response[8] != ' ') return 0;
  const std::string code = response.substr(9, 3);
  for (char c : code) {
    if (c < '0' || c > '9') return 0;
  }
  return std::stoi(code);
}

}  // namespace udpring::test
