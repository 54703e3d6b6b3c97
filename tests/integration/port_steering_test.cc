// The port-steering program and the steered send sockets on real sockets: a
// SO_REUSEPORT group in a namespace of the test's own, datagrams sent over
// its loopback from chosen source ports, and a check of which socket got each.

#include "io/kernel/port_steering.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/ipv4_addr.h"
#include "core/unique_fd.h"
#include "io/kernel/udp_socket.h"
#include "tests/support/netns.h"

namespace udpring::test {
namespace {

constexpr uint16_t kGroupPort = 8285;
const core::Be32 kLoopback = *core::parse_ipv4("127.0.0.1");

// A reuseport group of n sockets on 127.0.0.1:8285 with the program; index i
// is the i-th socket bound.
class Group {
 public:
  explicit Group(unsigned n) {
    for (unsigned i = 0; i < n; ++i) socks_.push_back(io::open_udp_socket({kLoopback, kGroupPort, true}));
    const int err = io::attach_port_steering(socks_[0].get(), n);
    EXPECT_EQ(err, 0) << std::strerror(err);
  }

  /// Sends `payload` from `from` (a bound socket); returns the index of the
  /// socket that received it, or -1.
  int deliver(int from, const std::vector<uint8_t>& payload) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(kGroupPort);
    to.sin_addr.s_addr = kLoopback.raw;
    if (::sendto(from, payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to),
                 sizeof to) != static_cast<ssize_t>(payload.size())) {
      ADD_FAILURE() << "sendto: " << std::strerror(errno);
      return -1;
    }
    std::vector<pollfd> fds;
    for (const auto& s : socks_) fds.push_back({s.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 2000) <= 0) return -1;
    int got = -1;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      std::vector<uint8_t> buf(2048);
      EXPECT_EQ(::recv(socks_[i].get(), buf.data(), buf.size(), MSG_DONTWAIT),
                static_cast<ssize_t>(payload.size()));
      EXPECT_EQ(got, -1) << "one datagram reached two sockets";
      got = static_cast<int>(i);
    }
    return got;
  }

 private:
  std::vector<core::UniqueFd> socks_;
};

void in_fresh_netns(const std::string& tag, const std::function<void()>& fn) {
  std::string name = "urps";
  name += std::to_string(getpid() % 100000);
  name += tag;
  Netns ns(name);
  run_in_netns(ns.name(), fn);
}

core::UniqueFd sender_on(uint16_t port) { return io::open_udp_socket({kLoopback, port, false, 1 << 16, 1 << 16, 0}); }

// Every datagram reaches socket (source port mod n), whatever it carries.
TEST(PortSteering, DatagramReachesTheSocketItsSourcePortNames) {
  UDPRING_REQUIRE_INTEGRATION();
  for (const unsigned n : {2u, 3u, 4u}) {
    const char tag[] = {'m', static_cast<char>('0' + n), '\0'};
    in_fresh_netns(tag, [&] {
      Group g(n);
      std::vector<int> per_socket(n, 0);
      for (uint16_t port = 40001; port < 40001 + 4 * n; ++port) {
        core::UniqueFd s = sender_on(port);
        for (const auto& payload : {std::vector<uint8_t>(100, 0x45), std::vector<uint8_t>{1}, std::vector<uint8_t>{}}) {
          const int got = g.deliver(s.get(), payload);
          ASSERT_GE(got, 0) << "datagram from port " << port << " lost";
          EXPECT_EQ(static_cast<uint32_t>(got), io::steered_socket(port, n)) << "from port " << port;
          ++per_socket[static_cast<size_t>(got)];
        }
      }
      for (unsigned i = 0; i < n; ++i) EXPECT_EQ(per_socket[i], 12) << "socket " << i;
    });
  }
}

// IP options move the UDP header; the program must find the port after them.
TEST(PortSteering, SourcePortIsFoundBehindIpOptions) {
  UDPRING_REQUIRE_INTEGRATION();
  in_fresh_netns("o", [&] {
    Group g(3);
    for (uint16_t port = 40100; port < 40106; ++port) {
      core::UniqueFd s = sender_on(port);
      // Record route with room for 1 address: 8 bytes of options, IHL 7.
      const uint8_t opts[8] = {IPOPT_RR, 7, 4, 0, 0, 0, 0, IPOPT_END};
      ASSERT_EQ(setsockopt(s.get(), IPPROTO_IP, IP_OPTIONS, opts, sizeof opts), 0) << std::strerror(errno);
      EXPECT_EQ(g.deliver(s.get(), std::vector<uint8_t>(64, 7)), static_cast<int>(io::steered_socket(port, 3)))
          << "from port " << port;
    }
  });
}

// Worker w sends from base + w with base on the stride, so a peer with any
// worker count maps it to its own worker w mod n; the send sockets take
// nothing in.
TEST(PortSteering, SendSocketsTakeConsecutivePortsOnTheStride) {
  UDPRING_REQUIRE_INTEGRATION();
  in_fresh_netns("s", [&] {
    std::vector<core::UniqueFd> fds = io::open_steered_send_sockets(kLoopback, 3, 1 << 16);
    ASSERT_EQ(fds.size(), 3u);
    const uint16_t base = io::bound_port(fds[0].get());
    EXPECT_EQ(base, io::kFirstSendPortBase);
    for (unsigned w = 0; w < 3; ++w) {
      EXPECT_EQ(io::bound_port(fds[w].get()), base + w);
      for (unsigned n = 1; n <= 8; ++n) {
        EXPECT_EQ(io::steered_socket(static_cast<uint16_t>(base + w), n), w % n);
      }
    }
    // Nothing sent to a send socket is queued on it.
    core::UniqueFd s = sender_on(40300);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(base);
    to.sin_addr.s_addr = kLoopback.raw;
    ASSERT_EQ(::sendto(s.get(), "x", 1, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to), 1);
    pollfd pfd{fds[0].get(), POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 200), 0) << "a send socket received a datagram";

    // A port of the next run taken by someone else: that run is skipped.
    const auto next = static_cast<uint16_t>(base + io::kSourcePortStride);
    core::UniqueFd squatter = sender_on(static_cast<uint16_t>(next + 1));
    std::vector<core::UniqueFd> more = io::open_steered_send_sockets(kLoopback, 2, 1 << 16, next);
    ASSERT_EQ(more.size(), 2u);
    EXPECT_EQ(io::bound_port(more[0].get()), next + io::kSourcePortStride);
    // A run that would pass 65535 wraps to the lowest unprivileged base.
    std::vector<core::UniqueFd> top = io::open_steered_send_sockets(kLoopback, 17, 1 << 16, 65520);
    ASSERT_EQ(top.size(), 17u);
    EXPECT_EQ(io::bound_port(top[0].get()), 2 * io::kSourcePortStride);
  });
}

// Worker w of one node sends to worker w mod n2 of the other, which answers
// from its own port base: with equal worker counts a flow never moves, with
// different ones it settles after one round trip, wherever the bases are.
TEST(PortSteering, RoundTripsComeBackToOneWorker) {
  for (const uint16_t base1 : {io::kFirstSendPortBase, static_cast<uint16_t>(io::kFirstSendPortBase + io::kSourcePortStride)}) {
    for (const uint16_t base2 : {io::kFirstSendPortBase, static_cast<uint16_t>(2 * io::kSourcePortStride)}) {
      for (uint32_t n1 = 1; n1 <= 256; ++n1) {
        for (const uint32_t n2 : {n1, 1u, 2u, 3u, 8u, 36u, 72u, 256u}) {
          for (uint32_t w = 0; w < n1; w += 1 + n1 / 16) {
            const uint32_t at2 = io::steered_socket(static_cast<uint16_t>(base1 + w), n2);
            const uint32_t back = io::steered_socket(static_cast<uint16_t>(base2 + at2), n1);
            const uint32_t again = io::steered_socket(static_cast<uint16_t>(base2 +
                io::steered_socket(static_cast<uint16_t>(base1 + back), n2)), n1);
            if (n2 == n1) {
              ASSERT_EQ(back, w) << "n=" << n1 << " w=" << w;
            }
            ASSERT_EQ(again, back) << "n1=" << n1 << " n2=" << n2 << " w=" << w;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace udpring::test
