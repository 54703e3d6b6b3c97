#include "io/port_steering.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <iterator>
#include <string>
#include <system_error>

#include "core/ipv4_addr.h"
#include "io/udp_socket.h"

namespace udpring::io {

int attach_port_steering(int fd, uint32_t n_sockets) {
  if (n_sockets == 0) return EINVAL;
  // The program sees the UDP payload; SKF_NET_OFF loads are relative to the
  // outer IPv4 header instead, whose options (if any) MSH skips. A load that
  // fails ends the program with 0: socket 0.
  sock_filter prog[] = {
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, static_cast<uint32_t>(SKF_NET_OFF)),  // X = IHL * 4
      BPF_STMT(BPF_LD | BPF_H | BPF_IND, static_cast<uint32_t>(SKF_NET_OFF)),   // A = source port
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n_sockets),
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
  sock_fprog fprog{static_cast<unsigned short>(std::size(prog)), prog};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof fprog) < 0) return errno;
  return 0;
}

std::vector<core::UniqueFd> open_steered_send_sockets(core::Be32 addr, unsigned n, int rcvbuf,
                                                      int sndbuf, SendPortPlan plan) {
  if (n == 0 || n > kSourcePortStride) {
    throw std::system_error(EINVAL, std::generic_category(), "steered send sockets: bad worker count");
  }
  const unsigned top = 65536 - n;  // the highest usable base, before rounding down
  const unsigned bases = top / kSourcePortStride + 1;
  unsigned base = plan.first_base - plan.first_base % kSourcePortStride;
  int last_err = 0;
  std::string last_port;
  for (unsigned tried = 0; tried < bases; ++tried, base += kSourcePortStride) {
    if (base > top) base = kSourcePortStride;  // wrap; port 0 would mean "any"
    std::vector<core::UniqueFd> fds;
    try {
      for (unsigned w = 0; w < n; ++w) {
        last_port = std::to_string(base + w);
        fds.push_back(open_udp_socket({addr, static_cast<uint16_t>(base + w), false, rcvbuf, sndbuf, 0}));
      }
      return fds;
    } catch (const std::system_error& e) {
      last_err = e.code().value();
      if (last_err != EADDRINUSE) throw;
    }
  }
  throw std::system_error(last_err, std::generic_category(),
                          "no free run of " + std::to_string(n) + " UDP source ports on " +
                              core::format_ipv4(addr) + " (last tried " + last_port + ")");
}

}  // namespace udpring::io
