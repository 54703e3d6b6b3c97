#include "tests/support/traffic.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "core/unique_fd.h"
#include "tests/support/netns.h"

namespace udpring::test {
namespace {

using core::UniqueFd;

sockaddr_in make_addr(const std::string& ip, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) throw std::runtime_error("bad ip " + ip);
  return sa;
}

void set_timeout(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// A thread joined to a namespace that runs alongside the caller.
class NsThread {
 public:
  NsThread(const std::string& ns, std::function<void()> fn)
      : t_([ns, fn = std::move(fn), this] {
          try {
            run_in_netns(ns, fn);
          } catch (...) {
            error_ = std::current_exception();
          }
        }) {}
  void join() {
    if (t_.joinable()) t_.join();
    if (error_) std::rethrow_exception(error_);
  }
  ~NsThread() {
    if (t_.joinable()) t_.join();
  }

 private:
  std::exception_ptr error_;
  std::thread t_;
};

}  // namespace

uint64_t tcp_transfer_verified(const std::string& server_ns, const std::string& server_ip,
                               uint16_t port, const std::string& client_ns, uint64_t bytes,
                               int mss) {
  std::atomic<bool> listening{false};
  uint64_t verified = 0;
  NsThread server(server_ns, [&] {
    UniqueFd ls(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int one = 1;
    setsockopt(ls.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa = make_addr(server_ip, port);
    if (bind(ls.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(ls.get(), 1) != 0) {
      listening = true;
      throw std::runtime_error("server bind/listen " + server_ip + ": " + std::strerror(errno));
    }
    listening = true;
    pollfd pfd{ls.get(), POLLIN, 0};
    if (poll(&pfd, 1, 15000) != 1) throw std::runtime_error("no TCP connection arrived in 15 s");
    UniqueFd c(accept(ls.get(), nullptr, nullptr));
    set_timeout(c.get(), 15000);
    std::vector<uint8_t> buf(1 << 16);
    uint64_t off = 0;
    for (;;) {
      const ssize_t n = recv(c.get(), buf.data(), buf.size(), 0);
      if (n == 0) break;
      if (n < 0) throw std::runtime_error("recv after " + std::to_string(off) + " bytes: " + std::strerror(errno));
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != pattern_byte(off + i)) {
          throw std::runtime_error("byte mismatch at offset " + std::to_string(off + i));
        }
      }
      off += static_cast<uint64_t>(n);
    }
    verified = off;
  });
  while (!listening) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  NsThread client(client_ns, [&] {
    UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    set_timeout(s.get(), 15000);
    if (mss > 0 && setsockopt(s.get(), IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss) != 0) {
      throw std::runtime_error("TCP_MAXSEG " + std::to_string(mss) + ": " + std::strerror(errno));
    }
    sockaddr_in sa = make_addr(server_ip, port);
    if (connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      throw std::runtime_error("connect " + server_ip + ": " + std::strerror(errno));
    }
    std::vector<uint8_t> buf(1 << 16);
    for (uint64_t off = 0; off < bytes;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), bytes - off));
      for (size_t i = 0; i < n; ++i) buf[i] = pattern_byte(off + i);
      size_t sent = 0;
      while (sent < n) {
        const ssize_t r = send(s.get(), buf.data() + sent, n - sent, MSG_NOSIGNAL);
        if (r <= 0) throw std::runtime_error("send at " + std::to_string(off + sent) + ": " + std::strerror(errno));
        sent += static_cast<size_t>(r);
      }
      off += n;
    }
    shutdown(s.get(), SHUT_WR);
  });
  client.join();
  server.join();
  return verified;
}

uint64_t tcp_each_way_in_turn(const std::string& a_ns, const std::string& a_ip, const std::string& b_ns,
                              const std::string& b_ip, int connections, uint16_t first_port,
                              uint64_t bytes) {
  uint64_t moved = 0;
  uint16_t port = first_port;
  for (int k = 0; k < connections; ++k) moved += tcp_transfer_verified(b_ns, b_ip, port++, a_ns, bytes);
  for (int k = 0; k < connections; ++k) moved += tcp_transfer_verified(a_ns, a_ip, port++, b_ns, bytes);
  return moved;
}

std::optional<std::vector<uint8_t>> udp_exchange(const std::string& server_ns,
                                                 const std::string& server_ip, uint16_t port,
                                                 const std::string& client_ns,
                                                 const std::vector<uint8_t>& payload,
                                                 const UdpSendOptions& opts, int timeout_ms) {
  return udp_receive_during(server_ns, server_ip, port, [&] {
    run_in_netns(client_ns, [&] {
      UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      setsockopt(s.get(), IPPROTO_IP, IP_TTL, &opts.ttl, sizeof opts.ttl);
      const int pmtu = opts.dont_fragment ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT;
      setsockopt(s.get(), IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
      sockaddr_in sa = make_addr(server_ip, port);
      if (sendto(s.get(), payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&sa),
                 sizeof sa) != static_cast<ssize_t>(payload.size())) {
        throw std::runtime_error("sendto " + server_ip + ": " + std::strerror(errno));
      }
    });
  }, timeout_ms);
}

std::optional<std::vector<uint8_t>> udp_receive_during(const std::string& ns, const std::string& ip,
                                                       uint16_t port,
                                                       const std::function<void()>& action,
                                                       int timeout_ms) {
  std::atomic<bool> bound{false};
  std::atomic<bool> sent{false};
  std::optional<std::vector<uint8_t>> got;
  NsThread server(ns, [&] {
    UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = make_addr(ip, port);
    const int ok = bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    const int err = errno;
    bound = true;
    if (ok != 0) throw std::runtime_error("bind " + ip + ":" + std::to_string(port) + ": " + std::strerror(err));
    while (!sent) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    pollfd pfd{s.get(), POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) != 1) return;
    std::vector<uint8_t> buf(65536);
    const ssize_t n = recv(s.get(), buf.data(), buf.size(), 0);
    if (n >= 0) {
      buf.resize(static_cast<size_t>(n));
      got = std::move(buf);
    }
  });
  while (!bound) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  try {
    action();
  } catch (...) {
    sent = true;
    server.join();
    throw;
  }
  sent = true;
  server.join();
  return got;
}

size_t udp_burst(const std::string& server_ns, const std::string& server_ip, uint16_t port,
                 const std::string& client_ns, size_t count, size_t size, size_t gso_batch,
                 int timeout_ms) {
  std::atomic<bool> bound{false};
  std::atomic<bool> sent{false};
  size_t good = 0;
  NsThread server(server_ns, [&] {
    UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const int rcvbuf = 4 << 20;
    setsockopt(s.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    sockaddr_in sa = make_addr(server_ip, port);
    const int ok = bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    bound = true;
    if (ok != 0) throw std::runtime_error("bind " + server_ip + ": " + std::strerror(errno));
    std::vector<uint8_t> buf(65536);
    for (;;) {
      pollfd pfd{s.get(), POLLIN, 0};
      if (poll(&pfd, 1, sent ? timeout_ms : 5000) != 1) break;
      const ssize_t n = recv(s.get(), buf.data(), buf.size(), 0);
      if (n != static_cast<ssize_t>(size)) continue;
      // Which datagram: the first byte tells among candidates; check all bytes.
      bool matched = false;
      for (size_t i = 0; i < count && !matched; ++i) {
        if (buf[0] != pattern_byte(i * size)) continue;
        matched = true;
        for (size_t j = 0; j < size; ++j) {
          if (buf[j] != pattern_byte(i * size + j)) {
            matched = false;
            break;
          }
        }
      }
      if (matched) ++good;
      if (good == count) break;
    }
  });
  while (!bound) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  run_in_netns(client_ns, [&] {
    UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = make_addr(server_ip, port);
    if (connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      throw std::runtime_error("connect " + server_ip + ": " + std::strerror(errno));
    }
    const size_t batch = std::max<size_t>(1, gso_batch);
    if (batch > 1) {
      const int seg = static_cast<int>(size);
      if (setsockopt(s.get(), SOL_UDP, UDP_SEGMENT, &seg, sizeof seg) != 0) {
        throw std::runtime_error(std::string("UDP_SEGMENT: ") + std::strerror(errno));
      }
    }
    std::vector<uint8_t> buf(batch * size);
    for (size_t i = 0; i < count; i += batch) {
      const size_t n = std::min(batch, count - i);
      for (size_t k = 0; k < n * size; ++k) buf[k] = pattern_byte(i * size + k);
      if (send(s.get(), buf.data(), n * size, 0) < 0) {
        throw std::runtime_error(std::string("send burst: ") + std::strerror(errno));
      }
      // Pace a little so the receiving pod's socket is not the test's bottleneck.
      if ((i / batch) % 8 == 7) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  sent = true;
  server.join();
  return good;
}

std::string http_get(const std::string& ns, uint16_t port, const std::string& path) {
  std::string out;
  auto get = [&] {
    UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    set_timeout(s.get(), 2000);
    sockaddr_in sa = make_addr("127.0.0.1", port);
    if (connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return;
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (send(s.get(), req.data(), req.size(), MSG_NOSIGNAL) < 0) return;
    char buf[4096];
    ssize_t n;
    while ((n = recv(s.get(), buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  };
  if (ns.empty()) {
    get();
  } else {
    run_in_netns(ns, get);
  }
  return out;
}

void udp_send_raw(const std::string& ns, const std::string& src_ip, const std::string& dst_ip,
                  uint16_t dst_port, const std::vector<std::vector<uint8_t>>& datagrams, RawSend how) {
  run_in_netns(ns, [&] {
    UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in src = make_addr(src_ip, 0);
    if (bind(s.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      throw std::runtime_error("bind " + src_ip + ": " + std::strerror(errno));
    }
    const int pmtu = IP_PMTUDISC_DONT;  // let oversized test datagrams fragment
    setsockopt(s.get(), IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
    sockaddr_in dst = make_addr(dst_ip, dst_port);
    if (how == RawSend::kSinglyNoChecksum) {
      const int one = 1;
      if (setsockopt(s.get(), SOL_SOCKET, SO_NO_CHECK, &one, sizeof one) != 0) {
        throw std::runtime_error(std::string("SO_NO_CHECK: ") + std::strerror(errno));
      }
    }
    if (how == RawSend::kOneGsoSend && !datagrams.empty()) {
      std::vector<uint8_t> all;
      for (const auto& d : datagrams) all.insert(all.end(), d.begin(), d.end());
      const int seg = static_cast<int>(datagrams.front().size());
      if (setsockopt(s.get(), SOL_UDP, UDP_SEGMENT, &seg, sizeof seg) != 0) {
        throw std::runtime_error(std::string("UDP_SEGMENT: ") + std::strerror(errno));
      }
      if (sendto(s.get(), all.data(), all.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) < 0) {
        throw std::runtime_error("GSO sendto " + dst_ip + ": " + std::strerror(errno));
      }
      return;
    }
    for (const auto& d : datagrams) {
      if (sendto(s.get(), d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) < 0) {
        throw std::runtime_error("sendto " + dst_ip + ": " + std::strerror(errno));
      }
    }
  });
}

std::vector<Captured> capture_during(const std::string& ns, const std::vector<std::string>& ifnames,
                                     const std::function<void()>& action, int linger_ms) {
  std::vector<Captured> out;
  std::mutex mu;
  std::atomic<bool> ready{false};
  std::atomic<bool> stop{false};
  NsThread cap(ns, [&] {
    std::vector<UniqueFd> socks;
    std::vector<pollfd> pfds;
    for (const std::string& name : ifnames) {
      UniqueFd s(socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ALL)));
      if (!s) {
        ready = true;
        throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
      }
      // Bursts of thousands of packets must not overflow the capture.
      const int rcvbuf = 16 << 20;
      setsockopt(s.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
      sockaddr_ll sll{};
      sll.sll_family = AF_PACKET;
      sll.sll_protocol = htons(ETH_P_ALL);
      sll.sll_ifindex = static_cast<int>(if_nametoindex(name.c_str()));
      if (sll.sll_ifindex == 0 || bind(s.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
        ready = true;
        throw std::runtime_error("capture bind " + name);
      }
      pfds.push_back({s.get(), POLLIN, 0});
      socks.push_back(std::move(s));
    }
    ready = true;
    std::vector<uint8_t> buf(65536);
    while (!stop) {
      if (poll(pfds.data(), pfds.size(), 20) <= 0) continue;
      for (size_t i = 0; i < pfds.size(); ++i) {
        if (!(pfds[i].revents & POLLIN)) continue;
        sockaddr_ll from{};
        socklen_t fl = sizeof from;
        const ssize_t n = recvfrom(socks[i].get(), buf.data(), buf.size(), MSG_DONTWAIT,
                                   reinterpret_cast<sockaddr*>(&from), &fl);
        if (n <= 0 || from.sll_protocol != htons(ETH_P_IP)) continue;
        std::lock_guard lock(mu);
        out.push_back({ifnames[i], from.sll_pkttype == PACKET_OUTGOING,
                       std::vector<uint8_t>(buf.begin(), buf.begin() + n)});
      }
    }
  });
  while (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::exception_ptr action_error;
  try {
    action();
  } catch (...) {
    action_error = std::current_exception();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(linger_ms));
  stop = true;
  cap.join();
  if (action_error) std::rethrow_exception(action_error);
  std::lock_guard lock(mu);
  return out;
}

}  // namespace udpring::test
