#include "io/kernel/udp_socket.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <string>
#include <system_error>

#include "core/ipv4_addr.h"

namespace udpring::io {
namespace {

void set_buffer(int fd, int force_opt, int opt, int bytes) {
  // FORCE ignores net.core.[rw]mem_max but needs CAP_NET_ADMIN; fall back quietly.
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) == 0) return;
  (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
}

}  // namespace

core::UniqueFd open_udp_socket(const UdpSocketOptions& opts) {
  const std::string where = core::format_ipv4(opts.bind_addr) + ":" + std::to_string(opts.port);
  core::UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::system_error(errno, std::generic_category(), "socket(AF_INET, SOCK_DGRAM)");
  const int one = 1;
  if (opts.reuse_port &&
      setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
    throw std::system_error(errno, std::generic_category(), "setsockopt SO_REUSEPORT " + where);
  }
  set_buffer(fd.get(), SO_RCVBUFFORCE, SO_RCVBUF, opts.rcvbuf_bytes);
  set_buffer(fd.get(), SO_SNDBUFFORCE, SO_SNDBUF, opts.sndbuf_bytes);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(opts.port);
  sa.sin_addr.s_addr = opts.bind_addr.raw;
  int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  for (int waited = 0; rc < 0 && errno == EADDRINUSE && waited < opts.in_use_retry_ms; waited += 100) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  }
  if (rc < 0) {
    const int err = errno;
    std::string hint;
    if (err == EADDRINUSE) hint = " (another flanneld or udpringd holds the port?)";
    if (err == EADDRNOTAVAIL) hint = " (the address is not on this host)";
    throw std::system_error(err, std::generic_category(), "bind UDP " + where + hint);
  }
  return fd;
}

uint16_t bound_port(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) < 0) return 0;
  return ntohs(sa.sin_port);
}

}  // namespace udpring::io
