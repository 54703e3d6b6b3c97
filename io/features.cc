#include "io/features.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <exception>
#include <system_error>

#include "core/ones_sum.h"
#include "core/unique_fd.h"
#include "io/ring.h"
#include "io/tun_steering.h"

namespace udpring::io {

std::string probe_kernel_features() {
  std::string out;
  auto line = [&](const char* k, const std::string& v) { out.append(k).append(": ").append(v).append("\n"); };
  utsname u{};
  uname(&u);
  line("kernel", u.release);
  try {
    Ring ring(8, 16);
    line("io_uring", describe(ring.features()));
    io_uring_probe* probe = io_uring_get_probe_ring(ring.get());
    auto op = [&](int code) {
      return probe && io_uring_opcode_supported(probe, code) ? "yes" : "no";
    };
    line("io_uring READ_MULTISHOT (6.7+)", op(49));
    line("io_uring SENDMSG_ZC (6.1+)", op(IORING_OP_SENDMSG_ZC));
    line("io_uring RECVMSG", op(IORING_OP_RECVMSG));
    if (probe) io_uring_free_probe(probe);
  } catch (const std::exception& e) {
    line("io_uring", std::string("unavailable: ") + e.what());
  }
  core::UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  const int seg = 1400;
  line("UDP_GRO (5.0+)", setsockopt(s.get(), SOL_UDP, UDP_GRO, &one, sizeof one) == 0 ? "yes" : "no");
  line("UDP_SEGMENT (4.18+)",
       setsockopt(s.get(), SOL_UDP, UDP_SEGMENT, &seg, sizeof seg) == 0 ? "yes" : "no");
  line("/dev/net/tun", access("/dev/net/tun", R_OK | W_OK) == 0 ? "read/write" : "not accessible");
  line("TUN offload (IFF_VNET_HDR + TSO4)", "probed at start; a refusal falls back to plain TUN (logged)");
  try {
    TunSteering probe;  // loaded and dropped: attaching needs a TUN
    line("TUN steering program (TUNSETSTEERINGEBPF)", "loads");
  } catch (const std::system_error& e) {
    line("TUN steering program (TUNSETSTEERINGEBPF)", std::string("unavailable: ") + e.what());
  }
  line("checksum loop (TSO split, coalescing)", core::ones_sum_impl());
  return out;
}

}  // namespace udpring::io
