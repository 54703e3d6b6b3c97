#include "io/kernel/features.h"

#include <fcntl.h>
#include <linux/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <system_error>

#include "core/ones_sum.h"
#include "core/unique_fd.h"
#include "io/dataplane/ring.h"
#include "io/kernel/self_test.h"
#include "io/kernel/tun_device.h"
#include "io/kernel/tun_steering.h"

namespace udpring::io {
namespace {

bool set_up(int sock, const char* ifname) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) return false;
  ifr.ifr_flags |= IFF_UP;
  return ioctl(sock, SIOCSIFFLAGS, &ifr) == 0;
}

const char* verdict(const SelfTest& t) {
  switch (t.result) {
    case SelfTestResult::kPassed: return "passed";
    case SelfTestResult::kFailed: return "failed";
    case SelfTestResult::kSkipped: break;
  }
  return "skipped";
}

// The child's half of probe_in_scratch_netns: the probes as text on `out`.
std::string scratch_probes() {
  std::string out;
  auto line = [&](const char* k, const std::string& v) {
    out.append(k).append(": ").append(v).append("\n");
  };
  core::UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) {
    line("offload probes", std::string("not run: socket: ") + std::strerror(errno));
    return out;
  }
  if (!set_up(sock.get(), "lo")) {
    line("UDP GSO self-test (loopback)", std::string("not run: ") + std::strerror(errno));
  } else {
    const SelfTest t = self_test_udp_gso();
    line("UDP GSO self-test (loopback)", std::string(verdict(t)) + ": " + t.detail);
  }
  try {
    core::UniqueFd tun = open_tun_queue("udpring-probe", true);
    const TunOffload off = enable_tun_offload(tun.get(), true);
    if (!off.ok) {
      line("TUN offload (IFF_VNET_HDR, TSO4)", "refused: " + off.error);
      return out;
    }
    line("TUN offload (IFF_VNET_HDR, TSO4)", "yes");
    line("TUN USO (Linux 6.2+)", off.uso ? "yes" : "no");
    if (!set_up(sock.get(), "udpring-probe")) {
      line("TUN GSO write self-test", std::string("not run: link up: ") + std::strerror(errno));
      return out;
    }
    const uint32_t addr = htonl(0x0a000001);
    for (const bool udp : {false, true}) {
      if (udp && !off.uso) continue;
      const SelfTest t = self_test_tun_gso_write(tun.get(), addr, udp);
      line(udp ? "TUN UDP GSO write self-test" : "TUN TCP GSO write self-test",
           std::string(verdict(t)) + (t.detail.empty() ? "" : ": " + t.detail));
    }
  } catch (const std::exception& e) {
    line("TUN offload (IFF_VNET_HDR, TSO4)", std::string("not probed: ") + e.what());
  }
  return out;
}

}  // namespace

std::string probe_in_scratch_netns() {
  // A TUN probe creates a device; in a namespace of its own it touches
  // nothing of the host's and vanishes with the child.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    return std::string("offload probes: not run: pipe: ") + std::strerror(errno) + "\n";
  }
  core::UniqueFd rd(fds[0]), wr(fds[1]);
  const pid_t pid = fork();
  if (pid < 0) return std::string("offload probes: not run: fork: ") + std::strerror(errno) + "\n";
  if (pid == 0) {
    rd.reset();
    std::string text;
    if (unshare(CLONE_NEWNET) < 0) {
      text = std::string("offload probes (TUN offload, UDP GSO): not run: a scratch network "
                         "namespace needs root (") +
             std::strerror(errno) + "); the daemon probes at start\n";
    } else {
      text = scratch_probes();
    }
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = write(wr.get(), text.data() + done, text.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  wr.reset();
  std::string text;
  char buf[1024];
  for (;;) {
    const ssize_t n = read(rd.get(), buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    text += "offload probes: the probing process died";
    if (WIFSIGNALED(status)) text += std::string(" (") + strsignal(WTERMSIG(status)) + ")";
    text += "; the lines above, if any, are what it wrote before\n";
  }
  return text;
}

std::string probe_kernel_features() {
  std::string out;
  auto line = [&](const char* k, const std::string& v) { out.append(k).append(": ").append(v).append("\n"); };
  utsname u{};
  uname(&u);
  line("kernel", u.release);
  try {
    Ring ring(8, 16);
    line("io_uring", describe(ring.setup()));
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
  out += probe_in_scratch_netns();
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
