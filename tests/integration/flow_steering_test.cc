// The reuseport flow-steering program on real sockets: a SO_REUSEPORT group
// in a namespace of the test's own, datagrams with hand-made inner packets
// sent over its loopback, and a check of which socket each one reached.

#include "io/flow_steering.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/ipv4.h"
#include "core/ipv4_addr.h"
#include "core/unique_fd.h"
#include "io/udp_socket.h"
#include "tests/support/netns.h"
#include "tests/support/packet_builder.h"

namespace udpring::test {
namespace {

constexpr uint16_t kGroupPort = 8285;

struct Flow {
  std::string src, dst;
  uint8_t proto;
  uint16_t sport, dport;
};

std::vector<uint8_t> packet_of(const Flow& f, uint16_t frag = 0x4000) {
  std::vector<uint8_t> l4(24, 0x5a);
  l4[0] = static_cast<uint8_t>(f.sport >> 8);
  l4[1] = static_cast<uint8_t>(f.sport);
  l4[2] = static_cast<uint8_t>(f.dport >> 8);
  l4[3] = static_cast<uint8_t>(f.dport);
  return PacketBuilder().src(f.src).dst(f.dst).protocol(f.proto).frag(frag).payload(l4).build();
}

Flow reversed(const Flow& f) { return {f.dst, f.src, f.proto, f.dport, f.sport}; }

// A reuseport group of n sockets on 127.0.0.1:8285 (with or without the
// program) and a sender; index i is the i-th socket bound.
class Group {
 public:
  Group(unsigned n, bool steer) {
    for (unsigned i = 0; i < n; ++i) {
      socks_.push_back(io::open_udp_socket({*core::parse_ipv4("127.0.0.1"), kGroupPort, true}));
    }
    if (steer) {
      const int err = io::attach_flow_steering(socks_[0].get(), n);
      EXPECT_EQ(err, 0) << std::strerror(err);
    }
    sender_ = core::UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  }

  /// Sends `payload`; returns the index of the socket that received it, or -1.
  int deliver(const std::vector<uint8_t>& payload) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(kGroupPort);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::sendto(sender_.get(), payload.data(), payload.size(), 0,
                 reinterpret_cast<const sockaddr*>(&to), sizeof to) != static_cast<ssize_t>(payload.size())) {
      ADD_FAILURE() << "sendto: " << std::strerror(errno);
      return -1;
    }
    std::vector<pollfd> fds;
    for (const auto& s : socks_) fds.push_back({s.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 2000) <= 0) return -1;
    int got = -1;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      std::vector<uint8_t> buf(65536);
      const ssize_t n = ::recv(socks_[i].get(), buf.data(), buf.size(), MSG_DONTWAIT);
      EXPECT_EQ(n, static_cast<ssize_t>(payload.size()));
      EXPECT_EQ(got, -1) << "one datagram reached two sockets";
      got = static_cast<int>(i);
    }
    return got;
  }

 private:
  std::vector<core::UniqueFd> socks_;
  core::UniqueFd sender_;
};

std::vector<Flow> random_flows(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Flow> flows;
  for (size_t i = 0; i < n; ++i) {
    const auto a = [&] { return "10.50." + std::to_string(rng() % 256) + "." + std::to_string(1 + rng() % 254); };
    flows.push_back({a(), a(), (rng() & 1) ? core::kIpProtoTcp : core::kIpProtoUdp,
                     static_cast<uint16_t>(1024 + rng() % 60000), static_cast<uint16_t>(1 + rng() % 65535)});
  }
  return flows;
}

void in_fresh_netns(const char* tag, const std::function<void()>& fn) {
  Netns ns("urfs" + std::to_string(getpid() % 100000) + tag);
  run_in_netns(ns.name(), fn);
}

// The kernel runs the program as its mirror says, for 2 and 3 sockets, and
// the flows spread over every socket.
TEST(FlowSteering, KernelPicksTheSocketTheMirrorPredicts) {
  UDPRING_REQUIRE_INTEGRATION();
  for (const unsigned n : {2u, 3u}) {
    in_fresh_netns(n == 2 ? "a" : "b", [&] {
      Group g(n, true);
      std::vector<int> per_socket(n, 0);
      for (const Flow& f : random_flows(120, 7 * n)) {
        const auto p = packet_of(f);
        const uint32_t want = io::flow_steering_index(p, n);
        ASSERT_LT(want, n);
        const int got = g.deliver(p);
        ASSERT_GE(got, 0) << "datagram lost";
        EXPECT_EQ(static_cast<uint32_t>(got), want) << f.src << ":" << f.sport << " > " << f.dst << ":" << f.dport;
        ++per_socket[static_cast<size_t>(got)];
      }
      for (unsigned i = 0; i < n; ++i) EXPECT_GE(per_socket[i], 120 / n / 2) << "socket " << i;
    });
  }
}

// A flow's two directions land on the same socket, so one worker per node
// handles a connection's data and its ACKs.
TEST(FlowSteering, BothDirectionsOfAFlowShareASocket) {
  UDPRING_REQUIRE_INTEGRATION();
  in_fresh_netns("c", [&] {
    Group g(3, true);
    for (const Flow& f : random_flows(60, 99)) {
      const int there = g.deliver(packet_of(f));
      const int back = g.deliver(packet_of(reversed(f)));
      ASSERT_GE(there, 0);
      EXPECT_EQ(there, back) << f.src << ":" << f.sport << " <> " << f.dst << ":" << f.dport;
    }
  });
}

// Linux gives connect() even source ports, so connections from one client
// to one server differ only in bits above the lowest; they must still spread.
TEST(FlowSteering, ConnectionsWithEvenSourcePortsSpread) {
  UDPRING_REQUIRE_INTEGRATION();
  in_fresh_netns("d", [&] {
    Group g(2, true);
    int on_first = 0;
    const int flows = 64;
    for (int i = 0; i < flows; ++i) {
      const Flow f{"10.50.1.2", "10.50.2.2", core::kIpProtoTcp, static_cast<uint16_t>(50000 + 2 * i), 5201};
      const int got = g.deliver(packet_of(f));
      ASSERT_GE(got, 0);
      on_first += got == 0;
    }
    EXPECT_GE(on_first, flows / 4);
    EXPECT_LE(on_first, flows * 3 / 4);
  });
}

// Fragments carry ports only in the first one, so fragments go by addresses
// alone: all pieces of a datagram reach the same worker, in order.
TEST(FlowSteering, AllFragmentsOfADatagramShareASocket) {
  UDPRING_REQUIRE_INTEGRATION();
  in_fresh_netns("e", [&] {
    Group g(3, true);
    for (const Flow& f : random_flows(40, 5)) {
      const int first = g.deliver(packet_of(f, 0x2000));       // MF, offset 0
      const int middle = g.deliver(packet_of(f, 0x2000 | 3));  // MF, offset 24
      const int last = g.deliver(packet_of(f, 6));             // offset 48
      ASSERT_GE(first, 0);
      EXPECT_EQ(first, middle);
      EXPECT_EQ(first, last);
    }
  });
}

// What the program cannot read still arrives: not IPv4 (the kernel's hash
// decides), too short (socket 0), an ICMP packet (addresses only).
TEST(FlowSteering, OddPayloadsAreStillDelivered) {
  UDPRING_REQUIRE_INTEGRATION();
  in_fresh_netns("f", [&] {
    Group g(2, true);
    const std::vector<uint8_t> ipv6_like(40, 0x60);
    EXPECT_EQ(io::flow_steering_index(ipv6_like, 2), io::kFlowSteeringNoChoice);
    EXPECT_GE(g.deliver(ipv6_like), 0);
    const std::vector<uint8_t> runt = {0x45, 0, 0};
    EXPECT_EQ(io::flow_steering_index(runt, 2), 0u);
    EXPECT_EQ(g.deliver(runt), 0);
    const auto icmp = PacketBuilder().protocol(core::kIpProtoIcmp).payload_bytes(16).build();
    EXPECT_EQ(g.deliver(icmp), static_cast<int>(io::flow_steering_index(icmp, 2)));
    EXPECT_EQ(g.deliver({}), 0) << "an empty datagram";
  });
}

// Without the program one sender's datagrams all reach one socket whatever
// the inner flow: the case steering exists for (stock flannel sends every
// packet from port 8285).
TEST(FlowSteering, WithoutItOneSenderReachesOneSocket) {
  UDPRING_REQUIRE_INTEGRATION();
  in_fresh_netns("g", [&] {
    Group g(2, false);
    std::vector<int> seen;
    for (const Flow& f : random_flows(20, 3)) seen.push_back(g.deliver(packet_of(f)));
    for (const int s : seen) EXPECT_EQ(s, seen.front());
  });
}

}  // namespace
}  // namespace udpring::test
