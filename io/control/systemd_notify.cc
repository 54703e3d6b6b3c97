#include "io/control/systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "core/unique_fd.h"

namespace udpring::io {

void notify_systemd_ready() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof sa.sun_path) {
    spdlog::warn("NOTIFY_SOCKET {} is too long; systemd not notified", path);
    return;
  }
  std::memcpy(sa.sun_path, path, len);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
  core::UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const char msg[] = "READY=1";
  if (!fd || sendto(fd.get(), msg, sizeof msg - 1, 0, reinterpret_cast<sockaddr*>(&sa),
                    static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len)) < 0) {
    spdlog::warn("cannot notify systemd at {}: {}", path, std::strerror(errno));
  }
}

}  // namespace udpring::io
