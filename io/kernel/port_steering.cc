#include "io/kernel/port_steering.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <iterator>
#include <string>
#include <system_error>

#include "io/kernel/udp_socket.h"

namespace udpring::io {

int attach_port_steering(int fd, uint32_t n_sockets) {
  if (n_sockets == 0) return EINVAL;
  // The program sees the UDP payload; SKF_NET_OFF loads are relative to the
  // outer IPv4 header instead, whose options (if any) MSH skips. A load that
  // fails ends the program with 0: socket 0.
  constexpr auto kNet = static_cast<uint32_t>(SKF_NET_OFF);
  sock_filter prog[] = {
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, kNet),  // X = IHL * 4
      BPF_STMT(BPF_LD | BPF_H | BPF_IND, kNet),   // A = source port
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, kSourcePortStride),
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n_sockets),
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
  sock_fprog fprog{static_cast<unsigned short>(std::size(prog)), prog};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof fprog) < 0) return errno;
  return 0;
}

namespace {

// A send-only socket: the smallest receive buffer, and a filter that drops
// everything, so a well-known port cannot be used to pin kernel memory.
void make_send_only(int fd) {
  sock_filter drop[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  sock_fprog prog{1, drop};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
    throw std::system_error(errno, std::generic_category(), "SO_ATTACH_FILTER on a send socket");
  }
}

}  // namespace

std::vector<core::UniqueFd> open_steered_send_sockets(core::Be32 addr, unsigned n, int sndbuf,
                                                      uint16_t first_base) {
  if (n == 0 || n > kSourcePortStride) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "steered send sockets: " + std::to_string(n) + " workers");
  }
  constexpr unsigned kLowest = 2 * kSourcePortStride;  // 1680: the first base above 1023
  const unsigned top = 65536 - n;                      // base + n - 1 must stay <= 65535
  unsigned base = first_base - first_base % kSourcePortStride;
  if (base < kLowest || base > top) base = kLowest;
  const unsigned bases = (top - kLowest) / kSourcePortStride + 1;
  for (unsigned tried = 0; tried < bases; ++tried, base += kSourcePortStride) {
    if (base > top) base = kLowest;
    std::vector<core::UniqueFd> fds;
    try {
      for (unsigned w = 0; w < n; ++w) {
        const auto p = static_cast<uint16_t>(base + w);
        fds.push_back(open_udp_socket({addr, p, false, 0, sndbuf, 0}));
        make_send_only(fds.back().get());
      }
      return fds;
    } catch (const std::system_error& e) {
      if (e.code().value() != EADDRINUSE) throw;
    }
  }
  return {};
}

}  // namespace udpring::io
