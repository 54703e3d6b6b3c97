#pragma once
// systemd's readiness protocol, without libsystemd: under Type=notify,
// systemd waits for READY=1 before it counts the daemon as started.

namespace udpring::io {

/// Sends "READY=1" to the AF_UNIX datagram socket named by $NOTIFY_SOCKET
/// ('@' first: an abstract socket). Does nothing when it is unset; a send
/// that fails is logged, never thrown.
void notify_systemd_ready();

}  // namespace udpring::io
