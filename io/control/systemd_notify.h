#pragma once
// systemd's notify protocol, without libsystemd (a datagram with a few
// "KEY=value" lines to one socket is all it takes): under Type=notify,
// systemd waits for READY=1 before it counts the daemon as started, and
// FDSTORE=1 hands it descriptors to keep across a restart
// (io/daemon/fd_store.h).

#include <span>
#include <string>

namespace udpring::io {

/// $NOTIFY_SOCKET is set: a service manager listens.
bool systemd_notify_socket_set();

/// Sends `text` (and `fds`, SCM_RIGHTS) to the AF_UNIX datagram socket named
/// by $NOTIFY_SOCKET ('@' first: an abstract socket). False when it is unset
/// or the send fails, with the reason in `why`; never throws.
bool notify_systemd(const std::string& text, std::span<const int> fds, std::string& why);

/// Sends "READY=1". Does nothing when $NOTIFY_SOCKET is unset; a send that
/// fails is logged.
void notify_systemd_ready();

}  // namespace udpring::io
