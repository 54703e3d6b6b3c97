#pragma once
// Reading one message and the descriptors it carries (SCM_RIGHTS), as the
// tests that stand in for systemd's notify socket read them.

#include <sys/socket.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "core/unique_fd.h"

namespace udpring::test {

struct ReceivedMessage {
  std::string text;
  std::vector<core::UniqueFd> fds;  // close-on-exec, owned here
};

/// The next message on `fd` with up to 8 descriptors, or nullopt when
/// recvmsg fails (EAGAIN on a non-blocking socket, a receive timeout).
inline std::optional<ReceivedMessage> receive_with_fds(int fd) {
  char buf[512];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return std::nullopt;
  ReceivedMessage m{std::string(buf, static_cast<size_t>(n)), {}};
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
      int got;
      std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      m.fds.emplace_back(got);
    }
  }
  return m;
}

}  // namespace udpring::test
