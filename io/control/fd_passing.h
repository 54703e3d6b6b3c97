#pragma once
// A message and the descriptors it carries (SCM_RIGHTS) over an AF_UNIX
// socket: how systemd's fd store (systemd_notify.h) and the handover
// between two udpringds (io/daemon/handover.h) pass TUN queues and sockets.

#include <sys/socket.h>
#include <sys/un.h>

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/unique_fd.h"

namespace udpring::io {

/// Sends `text` with `fds` on `fd`: to `to` (a datagram socket's peer) when
/// given, else on the connected socket. True when all of `text` was sent;
/// errno says why not.
bool send_with_fds(int fd, const std::string& text, std::span<const int> fds,
                   const sockaddr_un* to = nullptr, socklen_t to_len = 0);

struct ReceivedMessage {
  std::string text;                 // empty at the end of a stream or seqpacket
  std::vector<core::UniqueFd> fds;  // close-on-exec, owned here
  bool truncated = false;           // the text or the descriptors did not fit
};

/// The next message on `fd`, with up to kMaxPassedFds descriptors, or
/// nullopt when recvmsg fails (errno kept: EAGAIN, a receive timeout).
std::optional<ReceivedMessage> receive_with_fds(int fd);

inline constexpr size_t kMaxPassedFds = 8;
inline constexpr size_t kMaxPassedText = 1024;

}  // namespace udpring::io
