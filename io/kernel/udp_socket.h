#pragma once
// The UDP socket a worker sends and receives encapsulated packets on.

#include <cstdint>

#include "core/be32.h"
#include "core/unique_fd.h"

namespace udpring::io {

struct UdpSocketOptions {
  core::Be32 bind_addr;         // the external interface's address (never 0.0.0.0)
  uint16_t port = 8285;         // host order
  bool reuse_port = false;      // one socket per worker on the same address
  int rcvbuf_bytes = 4 << 20;   // tried with SO_RCVBUFFORCE, then SO_RCVBUF
  int sndbuf_bytes = 4 << 20;
  // A daemon that just exited may still hold the port for a moment: the
  // kernel tears its io_uring (and the registered socket) down
  // asynchronously. Retry EADDRINUSE this long before giving up.
  int in_use_retry_ms = 5000;
};

/// Creates and binds the socket. flannel binds to the interface address, not
/// 0.0.0.0 (a security fix of v0.5.6); so do we. Throws std::system_error
/// naming the address.
core::UniqueFd open_udp_socket(const UdpSocketOptions& opts);

/// The local port `fd` is bound to (host order), 0 if it cannot be read.
uint16_t bound_port(int fd);

}  // namespace udpring::io
