#include "tests/support/original_peer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>

#include "tests/support/netns.h"

namespace udpring::test {
namespace {

// Deliberately separate from udpring's checksum code.
uint16_t header_checksum(const uint8_t* h, int len) {
  uint32_t sum = 0;
  for (int i = 0; i < len; i += 2) {
    if (i == 10) continue;  // the checksum field itself counts as zero
    sum += static_cast<uint32_t>(h[i] << 8 | h[i + 1]);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

bool decrement_ttl(uint8_t* pkt) {
  if (pkt[8] <= 1) return false;
  pkt[8]--;
  const uint16_t c = header_checksum(pkt, (pkt[0] & 0xf) * 4);
  pkt[10] = static_cast<uint8_t>(c >> 8);
  pkt[11] = static_cast<uint8_t>(c);
  return true;
}

}  // namespace

OriginalPeer::OriginalPeer(std::string ns, std::string tun, std::string tun_addr, int mtu,
                           std::string network, std::string bind_ip, uint16_t port,
                           std::string peer_subnet, std::string peer_ip)
    : peer_ip_(peer_ip), port_(port) {
  const auto slash = peer_subnet.find('/');
  in_addr a{};
  inet_pton(AF_INET, peer_subnet.substr(0, slash).c_str(), &a);
  const int len = std::stoi(peer_subnet.substr(slash + 1));
  peer_mask_ = len == 0 ? 0 : ~0u << (32 - len);
  peer_net_ = ntohl(a.s_addr) & peer_mask_;

  thread_ = std::thread([=, this] {
    int tun_fd = -1, udp_fd = -1;
    try {
      const std::string path = "/run/netns/" + ns;
      const int nsfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) throw std::runtime_error("setns " + ns);
      close(nsfd);
      tun_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
      ifreq ifr{};
      std::strncpy(ifr.ifr_name, tun.c_str(), IFNAMSIZ - 1);
      ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
      if (tun_fd < 0 || ioctl(tun_fd, TUNSETIFF, &ifr) != 0) throw std::runtime_error("TUNSETIFF");
      const std::string ipn = "ip -n " + ns + " ";
      sh_ok(ipn + "addr add " + tun_addr + "/32 dev " + tun);
      sh_ok(ipn + "link set " + tun + " mtu " + std::to_string(mtu) + " up");
      sh_ok(ipn + "route add " + network + " dev " + tun);
      udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(port_);
      inet_pton(AF_INET, bind_ip.c_str(), &sa.sin_addr);
      if (bind(udp_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) throw std::runtime_error("bind");
    } catch (const std::exception& e) {
      error_ = e.what();
      ready_ = true;
      if (tun_fd >= 0) close(tun_fd);
      if (udp_fd >= 0) close(udp_fd);
      return;
    }
    ready_ = true;
    loop(tun_fd, udp_fd);
    close(tun_fd);
    close(udp_fd);
  });
  while (!ready_) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  if (!error_.empty()) {
    thread_.join();
    throw std::runtime_error("original peer setup: " + error_);
  }
}

OriginalPeer::~OriginalPeer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void OriginalPeer::loop(int tun_fd, int udp_fd) {
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(port_);
  inet_pton(AF_INET, peer_ip_.c_str(), &peer.sin_addr);
  uint8_t buf[65536];
  pollfd pfds[2] = {{tun_fd, POLLIN, 0}, {udp_fd, POLLIN, 0}};
  while (!stop_) {
    if (poll(pfds, 2, 50) <= 0) continue;
    if (pfds[0].revents & POLLIN) {
      const ssize_t n = read(tun_fd, buf, sizeof buf);
      if (n >= 20 && (buf[0] >> 4) == 4) {
        uint32_t dst;
        std::memcpy(&dst, buf + 16, 4);
        if ((ntohl(dst) & peer_mask_) == peer_net_ && decrement_ttl(buf)) {
          if (sendto(udp_fd, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&peer),
                     sizeof peer) == n) {
            ++tun_to_udp_;
          }
        }
      }
    }
    if (pfds[1].revents & POLLIN) {
      const ssize_t n = recv(udp_fd, buf, sizeof buf, 0);
      if (n >= 20 && decrement_ttl(buf)) {
        if (write(tun_fd, buf, static_cast<size_t>(n)) == n) ++udp_to_tun_;
      }
    }
  }
}

}  // namespace udpring::test
