#include "io/kernel/self_test.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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

SelfTest self_test_tun_gso_write(int tun_fd, uint32_t tun_addr_be, bool udp) {
  constexpr size_t kGso = 100;
  constexpr size_t kPayload = kGso + kGso / 2;
  const size_t l4_hdr = udp ? 8 : 20;
  const size_t len = 20 + l4_hdr + kPayload;
  std::array<uint8_t, 20 + 20 + kPayload> pkt{};
  pkt[0] = 0x45;
  pkt[2] = static_cast<uint8_t>(len >> 8);
  pkt[3] = static_cast<uint8_t>(len);
  pkt[6] = 0x40;  // DF
  pkt[8] = 64;
  pkt[9] = udp ? 17 : 6;
  const uint32_t src = htonl(INADDR_LOOPBACK);
  std::memcpy(&pkt[12], &src, 4);
  std::memcpy(&pkt[16], &tun_addr_be, 4);
  uint32_t sum = 0;
  for (size_t i = 0; i < 20; i += 2) sum += static_cast<uint32_t>((pkt[i] << 8) | pkt[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  pkt[10] = static_cast<uint8_t>(~sum >> 8);
  pkt[11] = static_cast<uint8_t>(~sum);
  uint8_t* l4 = pkt.data() + 20;
  l4[0] = 0x9c;  // ports 40000 -> 9 (discard)
  l4[1] = 0x40;
  l4[3] = 9;
  const size_t l4_len = l4_hdr + kPayload;
  if (udp) {
    l4[4] = static_cast<uint8_t>(l4_len >> 8);
    l4[5] = static_cast<uint8_t>(l4_len);
  } else {
    l4[12] = 0x50;  // data offset 5
    l4[13] = 0x10;  // ACK
    l4[14] = 0xff;
  }
  // NEEDS_CSUM: the checksum field holds the pseudo-header sum.
  uint32_t ps = 0;
  for (size_t i = 12; i < 20; i += 2) ps += static_cast<uint32_t>((pkt[i] << 8) | pkt[i + 1]);
  ps += pkt[9] + static_cast<uint32_t>(l4_len);
  while (ps >> 16) ps = (ps & 0xffff) + (ps >> 16);
  const size_t csum_off = udp ? 6 : 16;
  l4[csum_off] = static_cast<uint8_t>(ps >> 8);
  l4[csum_off + 1] = static_cast<uint8_t>(ps);
  for (size_t i = 0; i < kPayload; ++i) l4[l4_hdr + i] = static_cast<uint8_t>(i);

  struct {
    uint8_t flags, gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset;
  } vnet{1, static_cast<uint8_t>(udp ? 5 : 1), static_cast<uint16_t>(20 + l4_hdr),
         static_cast<uint16_t>(kGso), 20, static_cast<uint16_t>(csum_off)};
  static_assert(sizeof vnet == 10);
  iovec iov[2] = {{&vnet, sizeof vnet}, {pkt.data(), len}};
  const ssize_t n = writev(tun_fd, iov, 2);
  if (n == static_cast<ssize_t>(sizeof vnet + len)) {
    return {SelfTestResult::kPassed, "a 2-segment GSO write was accepted"};
  }
  if (n < 0) return {SelfTestResult::kFailed, std::string("GSO write refused: ") + std::strerror(errno)};
  return {SelfTestResult::kFailed, "GSO write cut short: " + std::to_string(n) + " bytes"};
}

}  // namespace udpring::io
