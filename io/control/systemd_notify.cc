#include "io/control/systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/unique_fd.h"

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
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_name = &sa;
  msg.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(fds.empty() ? 0 : CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  if (!fd || sendmsg(fd.get(), &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) {
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
