// The port-steering program and the steered send sockets on real sockets: a
// SO_REUSEPORT group in a namespace of the test's own, datagrams sent over
// its loopback from chosen source ports, and a check of which socket got each.
// Then the same end to end between two udpringd nodes (see
// tests/support/netns.h): the workers' source ports, workers paired across
// nodes, and a peer of the original protocol.

#include "io/kernel/port_steering.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/ipv4_addr.h"
#include "core/unique_fd.h"
#include "io/kernel/udp_socket.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/original_peer.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

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

// With 2 workers each sends from its own source port, so the peer's
// SO_REUSEPORT group can spread the flows; the destination stays 8285.
TEST(SourcePorts, WorkersSendFromTheirOwnPorts) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=2"});
  auto d2 = start_udpringd(topo, 2, {"--workers=2"});
  std::set<int> src_ports;
  const auto caps = capture_during(topo.n1.name(), {"u0"}, [&] {
    // Several connections: the TUN's flow hash puts them on both queues.
    for (uint16_t port = 5020; port < 5036; ++port) {  // 16: all on one queue has p = 2^-15
      EXPECT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", port, topo.p1.name(), 256 << 10),
                256u << 10);
    }
  });
  for (const Captured& c : caps) {
    const auto& o = c.bytes;
    if (!c.outgoing || o.size() < 28 || o[9] != 17) continue;
    EXPECT_EQ((o[22] << 8) | o[23], kPort) << "destination port must stay 8285";
    src_ports.insert((o[20] << 8) | o[21]);
  }
  EXPECT_GE(src_ports.size(), 2u) << "all traffic left from one source port";
  EXPECT_EQ(src_ports.count(kPort), 0u) << "with spreading, no worker sends from 8285";
  // Worker w sends from base + w, base a multiple of 840 (port steering).
  std::set<int> residues;
  for (const int p : src_ports) residues.insert(p % 840);
  EXPECT_EQ(residues, (std::set<int>{0, 1}));
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// Two udpringd nodes with two workers each: worker w of one node sends only
// to worker w of the other, and connections spread over both workers of both
// nodes, in both directions. Without port steering the kernel's hash
// crosses or merges the pairs most of the time.
TEST(PortSteering, WorkersPairUpAndShareTheConnections) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::vector<std::string> flags = {"--workers=2", "--healthz-ip=127.0.0.1", "--healthz-port=9102"};
  auto d1 = start_udpringd(topo, 1, flags);
  auto d2 = start_udpringd(topo, 2, flags);
  for (auto* d : {d1.get(), d2.get()}) {
    EXPECT_TRUE(d->wait_for_log("receiving worker chosen by the sender's source port", 2000)) << d->log();
  }
  // 16 connections: a worker with at most 1 of them fails the spread check
  // below with probability 17 / 2^15 ~ 5e-4.
  for (uint16_t port = 5040; port < 5056; ++port) {
    ASSERT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", port, topo.p1.name(), 1 << 20), 1u << 20);
  }
  // The two nodes' metrics are read one after the other, and the last ACKs
  // of a connection may still be crossing between the reads: read again
  // until the pairs agree, for up to 2 s.
  std::string m1, m2;
  for (int attempt = 0; attempt < 20; ++attempt) {
    m1 = http_get(topo.n1.name(), 9102, "/metrics");
    m2 = http_get(topo.n2.name(), 9102, "/metrics");
    bool paired = true;
    for (int w = 0; w < 2; ++w) {
      paired = paired &&
               worker_metric(m1, "udpring_worker_udp_tx_packets_total", w) ==
                   worker_metric(m2, "udpring_worker_udp_rx_packets_total", w) &&
               worker_metric(m2, "udpring_worker_udp_tx_packets_total", w) ==
                   worker_metric(m1, "udpring_worker_udp_rx_packets_total", w);
    }
    if (paired) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (int w = 0; w < 2; ++w) {
    SCOPED_TRACE("worker " + std::to_string(w));
    // Sent by worker w of one node = received by worker w of the other (a
    // veth between namespaces loses nothing).
    EXPECT_EQ(worker_metric(m1, "udpring_worker_udp_tx_packets_total", w),
              worker_metric(m2, "udpring_worker_udp_rx_packets_total", w)) << m1 << m2;
    EXPECT_EQ(worker_metric(m2, "udpring_worker_udp_tx_packets_total", w),
              worker_metric(m1, "udpring_worker_udp_rx_packets_total", w)) << m1 << m2;
  }
  for (const std::string* m : {&m1, &m2}) {
    for (const char* name : {"udpring_worker_udp_rx_packets_total", "udpring_worker_tun_rx_packets_total"}) {
      const long long w0 = worker_metric(*m, name, 0), w1 = worker_metric(*m, name, 1);
      ASSERT_GE(std::min(w0, w1), 0) << *m;
      EXPECT_GT(w0 + w1, 100) << name;  // data segments one way, ACKs the other
      EXPECT_GT(std::min(w0, w1), (w0 + w1) / 16) << name << ": " << w0 << " / " << w1;
    }
  }
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// Nodes with different worker counts: worker w sends to the peer's worker
// w mod n, so a flow may move once before it settles; every byte must still
// arrive, both ways.
TEST(PortSteering, NodesWithDifferentWorkerCountsCarryEveryByte) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=2"});
  auto d2 = start_udpringd(topo, 2, {"--workers=3"});
  for (uint16_t port = 5060; port < 5064; ++port) {
    EXPECT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", port, topo.p1.name(), 8 << 20), 8u << 20);
    EXPECT_EQ(tcp_transfer_verified(topo.p1.name(), "10.50.1.2", port, topo.p2.name(), 8 << 20), 8u << 20);
  }
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2"));
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// A stock flanneld sends everything from port 8285, one outer 4-tuple; UDP
// GRO may merge its datagrams of different flows into one receive, so all of
// it must reach one worker ((8285 mod 840) mod 2 = 1), or flows could be
// reordered.
TEST(PortSteering, OriginalPeerStaysOnTheWorkerItsPortNames) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=2", "--healthz-ip=127.0.0.1", "--healthz-port=9102"});
  OriginalPeer peer(topo.n2.name(), "flannel0", "10.50.2.0", 1472, "10.50.0.0/16", "192.168.77.2",
                    kPort, "10.50.1.0/24", "192.168.77.1");
  for (uint16_t port = 5040; port < 5048; ++port) {
    ASSERT_EQ(tcp_transfer_verified(topo.p1.name(), "10.50.1.2", port, topo.p2.name(), 1 << 20), 1u << 20);
  }
  const std::string m = http_get(topo.n1.name(), 9102, "/metrics");
  EXPECT_EQ(worker_metric(m, "udpring_worker_udp_rx_packets_total", 0), 0) << m;
  EXPECT_GT(worker_metric(m, "udpring_worker_udp_rx_packets_total", 1), 8 * 700) << m;
  EXPECT_EQ(d1->stop(), 0);
}

}  // namespace
}  // namespace udpring::test
