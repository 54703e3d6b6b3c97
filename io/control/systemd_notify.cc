#include "io/control/systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "core/unique_fd.h"
#include "io/control/fd_passing.h"

namespace udpring::io {

bool systemd_notify_socket_set() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  return path != nullptr && path[0] != '\0';
}

bool notify_systemd(const std::string& text, std::span<const int> fds, std::string& why) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') {
    why = "NOTIFY_SOCKET is not set";
    return false;
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof sa.sun_path) {
    why = std::string("NOTIFY_SOCKET ") + path + " is too long";
    return false;
  }
  std::memcpy(sa.sun_path, path, len);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
  core::UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const auto sa_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  if (!fd || !send_with_fds(fd.get(), text, fds, &sa, sa_len)) {
    why = std::string("sending to NOTIFY_SOCKET ") + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

void notify_systemd_ready() {
  if (!systemd_notify_socket_set()) return;
  std::string why;
  if (!notify_systemd("READY=1", {}, why)) spdlog::warn("{}; systemd not notified", why);
}

}  // namespace udpring::io
