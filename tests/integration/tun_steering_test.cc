// The TUN steering program: run by the kernel on packets of our own making
// (BPF_PROG_TEST_RUN), and attached to a real two-queue TUN in a namespace
// of the test's own, where the kernel sends flows into it.
// Then the same end to end in udpringd between two nodes (see
// tests/support/netns.h): new connections on the workers in turn, a
// program the kernel refuses, and steering turned off.

#include "io/kernel/tun_steering.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/ipv4.h"
#include "core/unique_fd.h"
#include "io/kernel/tun_device.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/packet_builder.h"
#include "tests/support/traffic.h"

namespace udpring::test {
namespace {

std::vector<uint8_t> ports(uint16_t sport, uint16_t dport) {
  std::vector<uint8_t> p(20, 0);
  p[0] = static_cast<uint8_t>(sport >> 8);
  p[1] = static_cast<uint8_t>(sport);
  p[2] = static_cast<uint8_t>(dport >> 8);
  p[3] = static_cast<uint8_t>(dport);
  return p;
}

std::vector<uint8_t> flow_packet(uint8_t proto, const std::string& src, const std::string& dst,
                                 uint16_t sport, uint16_t dport) {
  return PacketBuilder().src(src).dst(dst).protocol(proto).payload(ports(sport, dport)).build();
}

TEST(TunSteering, NewFlowsTakeTheNextNumberAndKeepIt) {
  UDPRING_REQUIRE_INTEGRATION();
  io::TunSteering s;
  EXPECT_EQ(s.flows_placed(), 0u);
  const auto tcp = [](uint16_t sport) {
    return flow_packet(core::kIpProtoTcp, "10.50.1.2", "10.50.2.2", sport, 5201);
  };
  for (uint16_t i = 0; i < 4; ++i) EXPECT_EQ(s.run_on(tcp(40000 + i)), i);
  // Later packets of a flow, in any order, keep its number.
  for (uint16_t i = 4; i-- > 0;) EXPECT_EQ(s.run_on(tcp(40000 + i)), i);
  // The same addresses and ports over UDP, and the reverse direction, are
  // flows of their own.
  EXPECT_EQ(s.run_on(flow_packet(core::kIpProtoUdp, "10.50.1.2", "10.50.2.2", 40000, 5201)), 4u);
  EXPECT_EQ(s.run_on(flow_packet(core::kIpProtoTcp, "10.50.2.2", "10.50.1.2", 5201, 40000)), 5u);
  EXPECT_EQ(s.run_on(tcp(40002)), 2u);
  EXPECT_EQ(s.flows_placed(), 6u);
}

// A SYN starts a connection, so it takes the next number even for a
// 4-tuple an earlier connection left in the map; the rest of the
// connection keeps it. Without the SYN rule the reused 4-tuple would keep
// its old number (0) and the turn would be skipped.
TEST(TunSteering, SynTakesTheNextNumberForAReusedFourTuple) {
  UDPRING_REQUIRE_INTEGRATION();
  io::TunSteering s;
  constexpr uint8_t kSyn = 0x02, kAck = 0x10;
  const auto seg = [](uint16_t sport, uint8_t flags) {
    return tcp_segment("10.50.1.2", "10.50.2.2", sport, 5201, 1, 0, flags, {});
  };
  EXPECT_EQ(s.run_on(seg(40000, kSyn)), 0u);
  EXPECT_EQ(s.run_on(seg(40000, kAck)), 0u);
  EXPECT_EQ(s.run_on(seg(40001, kSyn)), 1u);
  EXPECT_EQ(s.run_on(seg(40000, kAck)), 0u);
  // Port 40000 again, for a new connection.
  EXPECT_EQ(s.run_on(seg(40000, kSyn)), 2u);
  EXPECT_EQ(s.run_on(seg(40000, kAck)), 2u);
  EXPECT_EQ(s.run_on(seg(40001, kAck)), 1u);
  // The answering side's SYN-ACK too.
  const auto syn_ack = tcp_segment("10.50.2.2", "10.50.1.2", 5201, 40001, 1, 2, kSyn | kAck, {});
  EXPECT_EQ(s.run_on(syn_ack), 3u);
  // A retransmitted SYN-ACK moves the flow once more; nothing of it is in
  // flight yet, so nothing can be reordered.
  EXPECT_EQ(s.run_on(syn_ack), 4u);
  EXPECT_EQ(s.run_on(tcp_segment("10.50.2.2", "10.50.1.2", 5201, 40001, 2, 2, kAck, {})), 4u);
  EXPECT_EQ(s.flows_placed(), 5u);
}

// The ports follow the IP options: read at a fixed offset, the packet with
// options would be keyed on option bytes and placed as a new flow.
TEST(TunSteering, PortsAreFoundBehindIpOptions) {
  UDPRING_REQUIRE_INTEGRATION();
  io::TunSteering s;
  const auto plain = flow_packet(core::kIpProtoUdp, "10.50.1.2", "10.50.2.2", 1000, 2000);
  EXPECT_EQ(s.run_on(plain), 0u);
  for (size_t len : {4u, 8u, 40u}) {
    std::vector<uint8_t> options(len, 0x01);  // NOPs
    options[0] = 0x94;  // router alert, then NOPs
    options[1] = 4;
    const auto p = PacketBuilder()
                       .src("10.50.1.2")
                       .dst("10.50.2.2")
                       .protocol(core::kIpProtoUdp)
                       .options(options)
                       .payload(ports(1000, 2000))
                       .build();
    EXPECT_EQ(s.run_on(p), 0u) << len << " bytes of options";
  }
  EXPECT_EQ(s.flows_placed(), 1u);
}

// Fragments carry no ports past the first, and all of a datagram's
// fragments must leave on one queue: they go by the addresses, as do
// protocols without ports. None of them takes a number.
TEST(TunSteering, FragmentsAndOtherProtocolsGoByAddresses) {
  UDPRING_REQUIRE_INTEGRATION();
  io::TunSteering s;
  const auto first_fragment =
      PacketBuilder().src("10.50.1.2").dst("10.50.2.2").frag(0x2000).payload(ports(1, 2)).build();
  const auto later_fragment =
      PacketBuilder().src("10.50.1.2").dst("10.50.2.2").frag(0x0020).payload(ports(9, 9)).build();
  const auto icmp = PacketBuilder().src("10.50.1.2").dst("10.50.2.2").protocol(core::kIpProtoIcmp).build();
  const uint32_t h = s.run_on(first_fragment);
  EXPECT_EQ(s.run_on(later_fragment), h);
  EXPECT_EQ(s.run_on(icmp), h);
  EXPECT_EQ(s.flows_placed(), 0u);
  // The hash spreads address pairs over two queues.
  std::set<uint32_t> queues;
  for (int i = 1; i < 33; ++i) {
    const std::string dst = "10.50." + std::to_string(i) + ".2";
    queues.insert(s.run_on(PacketBuilder().src("10.50.1.2").dst(dst).protocol(core::kIpProtoIcmp).build()) % 2);
  }
  EXPECT_EQ(queues.size(), 2u);
  EXPECT_EQ(s.flows_placed(), 0u);
}

TEST(TunSteering, MalformedPacketsGoToQueueZeroAndPlaceNothing) {
  UDPRING_REQUIRE_INTEGRATION();
  io::TunSteering s;
  auto tcp = flow_packet(core::kIpProtoTcp, "10.50.1.2", "10.50.2.2", 40000, 5201);
  std::vector<uint8_t> v6 = tcp;
  v6[0] = 0x65;
  EXPECT_EQ(s.run_on(v6), 0u);
  std::vector<uint8_t> short_ihl = tcp;
  short_ihl[0] = 0x44;
  EXPECT_EQ(s.run_on(short_ihl), 0u);
  // Ports cut off: the header is whole, the TCP header is not.
  EXPECT_EQ(s.run_on(std::span(tcp.data(), 22)), 0u);
  // (Shorter than an IPv4 header the test run refuses the packet, and the
  // kernel never sends one into a TUN.)
  // IHL 15 points past the end of this packet's bytes.
  std::vector<uint8_t> long_ihl = tcp;
  long_ihl[0] = 0x4f;
  EXPECT_EQ(s.run_on(long_ihl), 0u);
  EXPECT_EQ(s.flows_placed(), 0u);
  // And a good packet after all that is placed as usual.
  EXPECT_EQ(s.run_on(tcp), 0u);
  EXPECT_EQ(s.flows_placed(), 1u);
}

// Reads one IPv4/UDP datagram to 10.77.0.2 from any of `queues` within
// `timeout_ms`; returns its queue index and destination port (-1, 0 if none).
std::pair<int, uint16_t> next_datagram(const std::vector<core::UniqueFd>& queues, int timeout_ms) {
  std::vector<pollfd> fds;
  for (const auto& q : queues) fds.push_back({q.get(), POLLIN, 0});
  while (::poll(fds.data(), fds.size(), timeout_ms) > 0) {
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      uint8_t buf[2048];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      // Skip anything else the kernel sends into the device.
      if (n < 28 || (buf[0] >> 4) != 4 || buf[9] != core::kIpProtoUdp) continue;
      if (std::memcmp(&buf[16], "\x0a\x4d\x00\x02", 4) != 0) continue;
      const size_t ihl = size_t{buf[0] & 0x0fu} * 4;
      return {static_cast<int>(i), static_cast<uint16_t>((buf[ihl + 2] << 8) | buf[ihl + 3])};
    }
  }
  return {-1, 0};
}

// The program attached to a real two-queue TUN: the kernel sends each new
// flow out of the next queue and keeps every packet of a flow on its queue.
// Without the program, the TUN's hash would put 8 flows on alternating
// queues with probability 2 / 256.
TEST(TunSteering, RealTunSendsEachNewFlowOutOfTheNextQueue) {
  UDPRING_REQUIRE_INTEGRATION();
  Netns ns("urts" + std::to_string(getpid() % 100000));
  io::TunSteering s;
  run_in_netns(ns.name(), [&] {
    std::vector<core::UniqueFd> queues;
    queues.push_back(io::open_tun_queue("ust0"));
    queues.push_back(io::open_tun_queue("ust0"));
    const int err = s.attach(queues[0].get());
    ASSERT_EQ(err, 0) << std::strerror(err);
    sh_ok("sysctl -qw net.ipv6.conf.ust0.disable_ipv6=1");
    sh_ok("ip addr add 10.77.0.1/24 dev ust0 && ip link set ust0 up");
    core::UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(sock);
    auto send_to = [&](uint16_t port) {
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(port);
      inet_pton(AF_INET, "10.77.0.2", &to.sin_addr);
      ASSERT_EQ(::sendto(sock.get(), "x", 1, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to), 1);
    };
    int first = -1;
    for (uint16_t flow = 0; flow < 8; ++flow) {
      for (int packet = 0; packet < 3; ++packet) {
        send_to(static_cast<uint16_t>(7000 + flow));
        const auto [queue, port] = next_datagram(queues, 2000);
        ASSERT_EQ(port, 7000 + flow) << "flow " << flow << " packet " << packet;
        if (first < 0) first = queue;
        EXPECT_EQ(queue, (first + flow) % 2) << "flow " << flow << " packet " << packet;
      }
    }
  });
  EXPECT_EQ(s.flows_placed(), 8u);
}

// With two workers, the TUN steering program hands each new connection the
// next queue: consecutive connections from pod 1 are read by node 1's
// workers in turn, each wholly by one. By the TUN's hash alone, 6
// connections alternate with probability 2 / 64.
TEST(TunSteering, ConsecutiveConnectionsTakeTheWorkersInTurn) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=2", "--healthz-ip=127.0.0.1", "--healthz-port=9102"});
  auto d2 = start_udpringd(topo, 2, {"--workers=2"});
  EXPECT_TRUE(d1->wait_for_log("flows placed by a steering program, new ones in turn", 2000)) << d1->log();
  const std::string rx = "udpring_worker_tun_rx_packets_total";
  // A connection's last ACK may leave pod 1 after the transfer has returned:
  // read the counters once they have stopped moving, so that it is counted
  // with its own connection.
  auto settled = [&] {
    std::string m = http_get(topo.n1.name(), 9102, "/metrics");
    for (int i = 0; i < 20; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::string again = http_get(topo.n1.name(), 9102, "/metrics");
      const bool same = worker_metric(again, rx, 0) == worker_metric(m, rx, 0) &&
                        worker_metric(again, rx, 1) == worker_metric(m, rx, 1);
      m = std::move(again);
      if (same) break;
    }
    return m;
  };
  std::string before = settled();
  int first = -1;
  for (int conn = 0; conn < 6; ++conn) {
    SCOPED_TRACE("connection " + std::to_string(conn));
    ASSERT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", static_cast<uint16_t>(5070 + conn),
                                    topo.p1.name(), 1 << 20),
              1u << 20);
    const std::string after = settled();
    const long long w0 = worker_metric(after, rx, 0) - worker_metric(before, rx, 0);
    const long long w1 = worker_metric(after, rx, 1) - worker_metric(before, rx, 1);
    EXPECT_GT(w0 + w1, 10);
    const int busy = w1 > w0 ? 1 : 0;
    if (first < 0) first = busy;
    EXPECT_EQ(busy, (first + conn) % 2) << w0 << " / " << w1;
    EXPECT_EQ(std::min(w0, w1), 0) << "a connection was split over the workers";
    EXPECT_EQ(metric(after, "udpring_tun_flows_placed_total") -
                  metric(before, "udpring_tun_flows_placed_total"),
              1)
        << after;
    before = after;
  }
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// Refused by the kernel (here: no CAP_BPF or CAP_SYS_ADMIN, as in a
// container that lacks them), the daemon says why, keeps the TUN's hash and
// still forwards on both workers.
TEST(TunSteering, RefusedProgramFallsBackToTheTunsHash) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::vector<std::string> flags = {"--workers=2"};
  auto d1 = start_udpringd(topo, 1, {"--workers=2", "--healthz-ip=127.0.0.1", "--healthz-port=9104"},
                           {"setpriv", "--bounding-set=-bpf,-sys_admin"});
  auto d2 = start_udpringd(topo, 2, flags);
  EXPECT_TRUE(d1->wait_for_log("TUN steering off: creating the TUN steering map", 2000)) << d1->log();
  EXPECT_TRUE(d1->wait_for_log("flows placed by the TUN's flow hash", 2000)) << d1->log();
  const std::string m = http_get(topo.n1.name(), 9104, "/metrics");
  EXPECT_EQ(metric(m, "udpring_fast_path{path=\"tun_steering\"}"), 0) << m;
  EXPECT_EQ(metric(m, "udpring_fast_path_refused{path=\"tun_steering\"}"), 1) << m;
  EXPECT_EQ(metric(m, "udpring_fast_path{path=\"port_steering\"}"), 1) << m;
  for (uint16_t port = 5080; port < 5084; ++port) {
    EXPECT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", port, topo.p1.name(), 4 << 20), 4u << 20);
  }
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// Turned off, the daemon says so and places nothing.
TEST(TunSteering, OffLeavesTheChoiceToTheTunsHash) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(
      topo, 1, {"--workers=2", "--no-tun-steering", "--healthz-ip=127.0.0.1", "--healthz-port=9102"});
  EXPECT_TRUE(d1->wait_for_log("flows placed by the TUN's flow hash", 2000)) << d1->log();
  EXPECT_EQ(metric(http_get(topo.n1.name(), 9102, "/metrics"), "udpring_tun_flows_placed_total"), -1);
  EXPECT_EQ(d1->stop(), 0);
}

}  // namespace
}  // namespace udpring::test
