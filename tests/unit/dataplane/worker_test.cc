// The worker's whole pipeline, both directions, without root: a
// SOCK_SEQPACKET socketpair stands in for each node's TUN queue (it keeps
// packet boundaries, as a TUN does, and io_uring reads it the same way) and
// the two "nodes" talk UDP on 127.0.0.1. Node A's worker reads a packet from
// its "TUN", encapsulates it to B's socket; B's worker checks and writes it
// to its "TUN", where the test reads it back byte for byte.

#include "io/dataplane/worker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "core/ipv4.h"
#include "tests/support/packet_builder.h"

namespace udpring {
namespace {

using core::Counter;

// A UDP socket on `addr` (any of 127.0.0.0/8 is local), on a free port.
core::UniqueFd udp_on_loopback(const char* addr = "127.0.0.1") {
  core::UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = core::parse_ipv4(addr)->raw;
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  return fd;
}

uint16_t port_of(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return sa.sin_port;  // network order
}

// One "node": a worker with a socketpair TUN, a loopback UDP socket and a
// route table holding the other node's subnet.
struct Node {
  core::Qsbr qsbr{1};
  core::RouteTable table{qsbr};
  core::WorkerStats stats;
  std::atomic<bool> stop{false};
  core::UniqueFd tun_outside;  // the test's end of the "TUN"
  uint16_t port_be = 0;
  std::unique_ptr<io::Worker> worker;
  std::thread thread;

  Node(const io::WorkerOptions& opts, core::UniqueFd udp, core::UniqueFd tun_inside,
       core::UniqueFd outside) {
    tun_outside = std::move(outside);
    port_be = port_of(udp.get());
    worker = std::make_unique<io::Worker>(0, std::move(tun_inside), std::move(udp), core::UniqueFd(),
                                          table, qsbr, stats, stop, opts);
  }
  void route(const char* prefix, uint16_t peer_port_be) {
    table.set({*core::parse_prefix(prefix), {*core::parse_ipv4("127.0.0.1"), peer_port_be}});
    table.publish();
  }
  void start() {
    thread = std::thread([this] { worker->run(); });
    while (worker->state() == io::WorkerState::kStarting) std::this_thread::yield();
    ASSERT_EQ(worker->state(), io::WorkerState::kRunning) << worker->error();
  }
  ~Node() {
    stop.store(true);
    if (thread.joinable()) thread.join();
  }
};

struct Pair {
  std::unique_ptr<Node> a, b;

  explicit Pair(io::WorkerOptions opts) {
    opts.tun_buffers = 64;
    opts.udp_buffers = 64;
    opts.gro = false;  // one datagram per receive keeps the counts exact
    auto make = [&opts] {
      int sv[2];
      EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
      return std::make_unique<Node>(opts, udp_on_loopback(), core::UniqueFd(sv[0]),
                                    core::UniqueFd(sv[1]));
    };
    a = make();
    b = make();
    a->route("10.5.2.0/24", b->port_be);
    b->route("10.5.1.0/24", a->port_be);
    a->start();
    b->start();
  }
};

std::vector<uint8_t> read_packet(int fd, int timeout_ms = 2000) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) != 1) return {};
  std::vector<uint8_t> buf(4096);
  const ssize_t n = read(fd, buf.data(), buf.size());
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buf;
}

TEST(Worker, CarriesABatchOfPacketsBetweenTwoNodesByteForByte) {
  io::WorkerOptions opts;
  Pair pair(opts);
  std::vector<std::vector<uint8_t>> sent;
  for (int i = 0; i < 40; ++i) {
    sent.push_back(test::PacketBuilder()
                       .src("10.5.1.2")
                       .dst("10.5.2.3")
                       .ttl(64)
                       .id(static_cast<uint16_t>(i))
                       .payload(test::random_bytes(100 + 25 * i, static_cast<uint32_t>(i)))
                       .build());
    ASSERT_EQ(write(pair.a->tun_outside.get(), sent.back().data(), sent.back().size()),
              static_cast<ssize_t>(sent.back().size()));
  }
  for (const auto& want : sent) {
    std::vector<uint8_t> got = read_packet(pair.b->tun_outside.get());
    ASSERT_EQ(got.size(), want.size());
    // TTL - 1 on each side, as flannel's proxy does, with the header
    // checksum patched to match; every other byte as sent.
    std::vector<uint8_t> expected = want;
    ASSERT_TRUE(core::ipv4_decrement_ttl(expected.data()));
    ASSERT_TRUE(core::ipv4_decrement_ttl(expected.data()));
    EXPECT_EQ(got, expected);
    EXPECT_TRUE(test::header_checksum_ok(got));
  }
  // A write's completion is counted when the worker reaps it, which can be
  // after the packet is already readable here: give the counters a moment.
  for (int i = 0; i < 100 && pair.b->stats.get(Counter::kTunTxPackets) < 40; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(pair.a->stats.get(Counter::kTunRxPackets), 40u);
  EXPECT_EQ(pair.b->stats.get(Counter::kTunTxPackets), 40u);
}

TEST(Worker, DropsAndCountsWhatItMustNotForward) {
  io::WorkerOptions opts;
  opts.tun_addr = *core::parse_ipv4("10.5.1.0");
  Pair pair(opts);
  const auto no_route = test::PacketBuilder().src("10.5.1.2").dst("10.9.9.9").build();
  const auto ttl_one = test::PacketBuilder().src("10.5.1.2").dst("10.5.2.3").ttl(1).build();
  const std::vector<uint8_t> garbage = {0x60, 1, 2, 3, 4, 5};
  for (const auto* p : {&no_route, &ttl_one, &garbage}) {
    ASSERT_EQ(write(pair.a->tun_outside.get(), p->data(), p->size()), static_cast<ssize_t>(p->size()));
  }
  // A route miss is answered with ICMP Net Unreachable from the TUN address.
  const std::vector<uint8_t> icmp = read_packet(pair.a->tun_outside.get());
  ASSERT_GE(icmp.size(), 28u);
  EXPECT_EQ(icmp[9], core::kIpProtoIcmp);
  EXPECT_EQ(icmp[20], 3) << "Destination Unreachable";
  EXPECT_EQ(icmp[21], 0) << "Net Unreachable";

  // Datagrams straight to B's socket: from an address that is no peer
  // (dropped), from a peer's address with a cut inner packet (dropped), and
  // from a peer's address with a good one (delivered).
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = pair.b->port_be;
  auto send_to_b = [&to](const core::UniqueFd& from, const std::vector<uint8_t>& d) {
    ASSERT_EQ(sendto(from.get(), d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(d.size()));
  };
  const auto inner = test::PacketBuilder().src("10.5.1.2").dst("10.5.2.3").build();
  const std::vector<uint8_t> cut(inner.begin(), inner.begin() + 10);
  core::UniqueFd stranger = udp_on_loopback("127.0.0.2");
  core::UniqueFd peer_addr = udp_on_loopback("127.0.0.1");
  send_to_b(stranger, inner);
  send_to_b(peer_addr, cut);
  send_to_b(peer_addr, inner);
  EXPECT_EQ(read_packet(pair.b->tun_outside.get()).size(), inner.size());
  EXPECT_TRUE(read_packet(pair.b->tun_outside.get(), 300).empty()) << "a dropped datagram was forwarded";

  for (int i = 0; i < 100; ++i) {
    if (pair.a->stats.get(Counter::kDropTtlExpired) == 1 &&
        pair.a->stats.get(Counter::kDropBadHeaderTun) == 1 &&
        pair.b->stats.get(Counter::kDropBadHeaderUdp) == 1 &&
        pair.b->stats.get(Counter::kDropUnknownPeer) == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(pair.a->stats.get(Counter::kDropNoRoute), 1u);
  EXPECT_EQ(pair.a->stats.get(Counter::kDropTtlExpired), 1u);
  EXPECT_EQ(pair.a->stats.get(Counter::kDropBadHeaderTun), 1u);
  EXPECT_EQ(pair.b->stats.get(Counter::kDropBadHeaderUdp), 1u);
  EXPECT_EQ(pair.b->stats.get(Counter::kDropUnknownPeer), 1u);
}

TEST(Worker, ReportsTheFastPathsItWasGranted) {
  io::WorkerOptions opts;
  opts.gso = false;
  Pair pair(opts);
  const io::FastPaths& got = pair.a->worker->fast_paths();
  EXPECT_FALSE(got.gro) << "not asked for";
  EXPECT_NE(pair.a->worker->fast_paths_text().find(", UDP RECVMSG multishot"), std::string::npos);
  EXPECT_EQ(pair.a->worker->fast_paths_text().find("UDP GSO"), std::string::npos);
}

}  // namespace
}  // namespace udpring
