#include "io/self_test.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"

namespace udpring::io {
namespace {

constexpr size_t kSeg = 100;

core::UniqueFd bound_loopback_socket(sockaddr_in& addr) {
  core::UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    fd.reset();
  }
  return fd;
}

bool loopback_up() {
  core::UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  return fd && ioctl(fd.get(), SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
}

}  // namespace

SelfTest self_test_udp_gso() {
  // A namespace whose lo is down silently drops what we send to 127.0.0.1,
  // which proves nothing about GSO.
  if (!loopback_up()) return {SelfTestResult::kSkipped, "the loopback interface is down"};
  sockaddr_in tx_addr{}, rx_addr{};
  core::UniqueFd tx = bound_loopback_socket(tx_addr);
  core::UniqueFd rx = bound_loopback_socket(rx_addr);
  if (!tx || !rx) return {SelfTestResult::kSkipped, "cannot bind sockets on 127.0.0.1"};

  std::array<uint8_t, 2 * kSeg> payload;
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 13 + 1);
  iovec iov{payload.data(), payload.size()};
  alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(uint16_t))] = {};
  msghdr msg{};
  msg.msg_name = &rx_addr;
  msg.msg_namelen = sizeof rx_addr;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  const uint16_t seg = kSeg;
  std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
  if (sendmsg(tx.get(), &msg, 0) != static_cast<ssize_t>(payload.size())) {
    const int err = errno;
    if (err == ENETUNREACH || err == EADDRNOTAVAIL || err == ENETDOWN) {
      return {SelfTestResult::kSkipped, std::string("loopback unusable: ") + std::strerror(err)};
    }
    return {SelfTestResult::kFailed, std::string("GSO sendmsg failed: ") + std::strerror(err)};
  }
  for (size_t k = 0; k < 2; ++k) {
    pollfd pfd{rx.get(), POLLIN, 0};
    if (poll(&pfd, 1, 100) != 1) {
      return {SelfTestResult::kFailed, "datagram " + std::to_string(k + 1) + " of 2 never arrived"};
    }
    std::array<uint8_t, 2 * kSeg + 1> buf;
    const ssize_t n = recv(rx.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n != static_cast<ssize_t>(kSeg) ||
        std::memcmp(buf.data(), payload.data() + k * kSeg, kSeg) != 0) {
      return {SelfTestResult::kFailed, "datagram " + std::to_string(k + 1) + " came back as " +
                                           std::to_string(n) + " wrong bytes"};
    }
  }
  return {SelfTestResult::kPassed, "2 segments sent as one GSO sendmsg arrived intact"};
}

}  // namespace udpring::io
