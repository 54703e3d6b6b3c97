#pragma once
// An independent implementation of flannel's original udp backend data path,
// written from the protocol description alone and sharing no code with
// udpring: one TUN (IFF_TUN|IFF_NO_PI), one UDP socket, poll(), one packet per
// read/sendto and per recv/write, TTL - 1 with a full header checksum
// recompute. Interop tests run it on one node and udpringd on the other.

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

namespace udpring::test {

class OriginalPeer {
 public:
  /// Creates TUN `tun` in namespace `ns` with address tun_addr/32, MTU and a
  /// route for `network`; binds bind_ip:port; forwards traffic for
  /// `peer_subnet` (a.b.c.d/len) to peer_ip:port until destroyed.
  OriginalPeer(std::string ns, std::string tun, std::string tun_addr, int mtu, std::string network,
               std::string bind_ip, uint16_t port, std::string peer_subnet, std::string peer_ip);
  ~OriginalPeer();

  uint64_t tun_to_udp() const { return tun_to_udp_.load(); }
  uint64_t udp_to_tun() const { return udp_to_tun_.load(); }

 private:
  void loop(int tun_fd, int udp_fd);
  std::atomic<bool> stop_{false};
  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> tun_to_udp_{0};
  std::atomic<uint64_t> udp_to_tun_{0};
  std::string error_;
  uint32_t peer_net_ = 0, peer_mask_ = 0;  // host order
  std::string peer_ip_;
  uint16_t port_;
  std::thread thread_;
};

}  // namespace udpring::test
