#include "io/daemon/worker_sockets.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <string>

#include "core/ipv4_addr.h"
#include "io/kernel/port_steering.h"
#include "io/kernel/udp_socket.h"

namespace udpring::io {

WorkerSockets open_worker_sockets(const Options& opts, core::Be32 addr, uint16_t port,
                                  unsigned n_workers) {
  WorkerSockets s;
  s.send.resize(n_workers);
  const int rcvbuf = static_cast<int>(opts.socket_rcvbuf);
  const int sndbuf = static_cast<int>(opts.socket_sndbuf);
  // A daemon that just exited may still hold its sockets, and ours would
  // join its SO_REUSEPORT group silently: wait until a plain bind works,
  // so that the group is new and socket i is worker i's.
  if (n_workers > 1) (void)open_udp_socket({addr, port, false, 0, 0});
  for (unsigned i = 0; i < n_workers; ++i) {
    s.udp.push_back(open_udp_socket({addr, port, n_workers > 1, rcvbuf, sndbuf}));
  }
  // All traffic between two nodes would otherwise be one UDP 4-tuple, which
  // a SO_REUSEPORT group cannot spread.
  const bool spread = opts.source_port_spread && n_workers > 1;
  const bool steer = opts.port_steering && n_workers > 1;
  std::string receive_by = "the kernel's hash of the sender's address and port";
  if (steer) {
    if (const int err = attach_port_steering(s.udp[0].get(), n_workers); err != 0) {
      spdlog::warn("port steering off: SO_ATTACH_REUSEPORT_CBPF failed ({}); the kernel's hash "
                   "picks the receiving worker, which may put every peer on one worker",
                   std::strerror(err));
    } else {
      receive_by = "the sender's source port";
      s.steered = true;
    }
  }
  std::string send_from = "Backend.Port";
  if (spread && steer) {
    std::vector<core::UniqueFd> fds = open_steered_send_sockets(addr, n_workers, sndbuf);
    if (fds.empty()) {
      spdlog::warn("no run of {} free UDP ports on {} to send from; sending from ports the "
                   "kernel picks, which the peer's workers cannot tell apart",
                   n_workers, core::format_ipv4(addr));
    } else {
      send_from = "ports " + std::to_string(bound_port(fds.front().get())) + "+worker";
      s.send = std::move(fds);
    }
  }
  if (spread && !s.send[0]) {
    for (unsigned i = 0; i < n_workers; ++i) {  // port 0: the kernel picks
      s.send[i] = open_udp_socket({addr, 0, false, 0, sndbuf});
    }
    send_from = "a port of its own per worker";
  }
  spdlog::info("UDP {}:{} ({} socket(s); sending from {}{})", core::format_ipv4(addr), port,
               n_workers, send_from,
               n_workers > 1 ? "; receiving worker chosen by " + receive_by : std::string());
  return s;
}

}  // namespace udpring::io
