// A router between the nodes whose far link has a smaller MTU than both
// nodes' interfaces: node 1's datagrams of 1,500 bytes do not fit it, and it
// answers with ICMP fragmentation needed, MTU 1,400. node 1's daemon learns
// that path MTU for node 2, and answers a pod's DF packet over 1,372 bytes
// (1,400 less the outer headers) with a fragmentation needed of its own, as
// a router would: the pod's kernel then sends smaller packets, and TCP
// lowers its MSS, instead of every packet going in two fragments.
//
//   p1 -- n1 [u0 192.168.77.1, MTU 1500] -- ra  r  rb [MTU 1400] -- [u0 192.168.77.2] n2 -- p2
//
// And a forged fragmentation needed naming a tiny MTU shrinks nothing below
// the kernel's own floor (552 bytes).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/original_peer.h"
#include "tests/support/packet_builder.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

namespace udpring::test {
namespace {

// Puts a router between the topology's nodes: the direct link goes, each
// node keeps its address on a /32 with the router as its gateway. Node 1's
// link is `near_mtu` at both ends, node 2's `far_mtu`.
void route_through(Topology& topo, const Netns& r, int far_mtu, int near_mtu = 1500) {
  const std::string n1 = topo.n1.name(), n2 = topo.n2.name(), rn = r.name();
  sh_ok("ip -n " + n1 + " link del u0");
  sh_ok("ip link add u0 netns " + n1 + " type veth peer name ra netns " + rn);
  sh_ok("ip link add u0 netns " + n2 + " type veth peer name rb netns " + rn);
  sh_ok("ip -n " + n2 + " link set u0 mtu " + std::to_string(far_mtu));
  sh_ok("ip -n " + rn + " link set rb mtu " + std::to_string(far_mtu));
  sh_ok("ip -n " + n1 + " link set u0 mtu " + std::to_string(near_mtu));
  sh_ok("ip -n " + rn + " link set ra mtu " + std::to_string(near_mtu));
  sh_ok("ip -n " + n1 + " addr add 192.168.77.1/32 dev u0");
  sh_ok("ip -n " + n2 + " addr add 192.168.77.2/32 dev u0");
  sh_ok("ip -n " + rn + " addr add 192.168.77.254/32 dev ra");
  sh_ok("ip -n " + rn + " addr add 192.168.77.253/32 dev rb");
  for (const auto& [ns, dev] : {std::pair{n1, "u0"}, {n2, "u0"}, {rn, "ra"}, {rn, "rb"}}) {
    sh_ok("ip -n " + ns + " link set " + dev + " up");
  }
  sh_ok("ip -n " + n1 + " route add 192.168.77.254/32 dev u0");
  sh_ok("ip -n " + n1 + " route add 192.168.77.2/32 via 192.168.77.254");
  sh_ok("ip -n " + n2 + " route add 192.168.77.253/32 dev u0");
  sh_ok("ip -n " + n2 + " route add 192.168.77.1/32 via 192.168.77.253");
  sh_ok("ip -n " + rn + " route add 192.168.77.1/32 dev ra");
  sh_ok("ip -n " + rn + " route add 192.168.77.2/32 dev rb");
  sh_ok(r.exec() + "sysctl -qw net.ipv4.ip_forward=1");
}

// `ping -M do` (DF set) of `bytes` in all (IP header included) from `from`
// to `to`; no_df_ping() the same with `-M dont`.
std::string sized_ping(const char* pmtu_mode, const Netns& from, const std::string& to, int bytes, int count) {
  return sh_out(from.exec() + "ping -n -M " + pmtu_mode + " -c " + std::to_string(count) + " -i 0.2 -W 1 -s " +
                std::to_string(bytes - 28) + " " + to + " 2>&1");
}
std::string df_ping(const Netns& from, const std::string& to, int bytes, int count = 1) {
  return sized_ping("do", from, to, bytes, count);
}
std::string no_df_ping(const Netns& from, const std::string& to, int bytes, int count = 1) {
  return sized_ping("dont", from, to, bytes, count);
}

TEST(PathMtu, ARoutersFragmentationNeededIsPassedOnToThePod) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  Netns r(topo.prefix + "r");
  route_through(topo, r, 1400);
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--healthz-ip=127.0.0.1", "--healthz-port=9136"});
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();

  // The first full-size DF packet meets the router's limit: lost, and the
  // router tells node 1. The next ones meet node 1's daemon's.
  df_ping(topo.p1, "10.50.2.2", 1472);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // a control-loop turn or two
  const std::string big = df_ping(topo.p1, "10.50.2.2", 1472, 3);
  EXPECT_NE(big.find("mtu = 1372"), std::string::npos) << big << d1->log();
  EXPECT_TRUE(d1->wait_for_log("peer 192.168.77.2: a router on the way carries at most 1400 bytes", 100))
      << d1->log();
  // The pod's kernel learned it: the next one is refused before it leaves.
  const std::string route = sh_out(topo.p1.exec() + "ip route get 10.50.2.2");
  EXPECT_NE(route.find("mtu 1372"), std::string::npos) << route;
  // What fits goes, DF or not, and so does a bigger packet without DF (in
  // two fragments on the underlay).
  EXPECT_NE(df_ping(topo.p1, "10.50.2.2", 1372).find(" 1 received"), std::string::npos);
  sh_ok(topo.p1.exec() + "ip route flush cache");
  const std::string no_df = no_df_ping(topo.p1, "10.50.2.2", 1472);
  EXPECT_NE(no_df.find(" 1 received"), std::string::npos) << no_df;

  const std::string m = http_get(topo.n1.name(), 9136, "/metrics");
  EXPECT_GE(metric(m, "udpring_drops_total{reason=\"too_big\"}"), 1) << m;
  EXPECT_GE(metric(m, "udpring_icmp_unreach_sent_total"), 1) << m;
  EXPECT_GE(metric(m, "udpring_peer_unreachable_total{peer=\"192.168.77.2\",reason=\"fragmentation_needed\"}"), 1)
      << m;

  // TCP from pod 1 (TSO super-packets with TUN offload) lowers its MSS and
  // moves every byte.
  EXPECT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", 5201, topo.p1.name(), 64ull << 20), 64ull << 20);
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// A peer with a larger MTU: node 2 runs the original protocol (an
// independent implementation, with no fragmentation needed of its own) on a
// 9000-byte link, its TUN and its pod at 8972; node 1's link is 1500, its
// TUN and pod 1472. Node 2's kernel learns the path MTU to node 1 from the
// router and then sends a pod's big datagram in fragments, which node 1's
// kernel reassembles: node 1's daemon receives an inner packet larger than
// its TUN's MTU. It writes it whole (a TUN does not check the MTU of what
// it is given), and node 1's kernel, forwarding it to the pod's 1472-byte
// link, answers a DF one with fragmentation needed, MTU 1472, which the
// daemon carries back to node 2 like any packet.
//
//   p2 [8972] -- n2 [u0 9000] -- rb  r  ra [1500] -- [u0 1500] n1 -- p1 [1472]
struct JumboPeer {
  Topology topo;
  Netns r{topo.prefix + "r"};
  JumboPeer() {
    route_through(topo, r, 9000, 1500);
    sh_ok("ip -n " + topo.n2.name() + " link set vp mtu 8972");
    sh_ok("ip -n " + topo.p2.name() + " link set eth0 mtu 8972");
  }
  // After the daemon on node 1 is ready (it reads the link's MTU at start).
  std::unique_ptr<OriginalPeer> start_peer() {
    return std::make_unique<OriginalPeer>(topo.n2.name(), "flannel0", "10.50.2.0", 8972, "10.50.0.0/16",
                                          "192.168.77.2", 8285, "10.50.1.0/24", "192.168.77.1");
  }
};

TEST(PathMtu, APacketFromAPeerWithALargerMtuIsDeliveredOrAnsweredWithFragmentationNeeded) {
  UDPRING_REQUIRE_INTEGRATION();
  JumboPeer j;
  auto d1 = start_udpringd(j.topo, 1, {"--workers=1", "--healthz-ip=127.0.0.1", "--healthz-port=9137"});
  auto peer = j.start_peer();
  ASSERT_TRUE(ping(j.topo.p2, "10.50.1.2", 2)) << d1->log();

  // The first 4,000-byte DF packet's datagram meets the router's limit
  // (DF on the outer header, the kernel's default for UDP) and teaches node
  // 2's kernel the path MTU; from then on its datagrams go in fragments.
  df_ping(j.topo.p2, "10.50.1.2", 4000);
  const std::string big = df_ping(j.topo.p2, "10.50.1.2", 4000, 3);
  EXPECT_NE(big.find("mtu = 1472"), std::string::npos) << big << d1->log();
  const std::string route = sh_out(j.topo.p2.exec() + "ip route get 10.50.1.2");
  EXPECT_NE(route.find("mtu 1472"), std::string::npos) << route;
  // What fits pod 1's link goes with DF; a big one without DF goes too, cut
  // by node 1's kernel after the daemon delivered it whole.
  EXPECT_NE(df_ping(j.topo.p2, "10.50.1.2", 1472).find(" 1 received"), std::string::npos);
  sh_ok(j.topo.p2.exec() + "ip route flush cache");
  const std::string no_df = no_df_ping(j.topo.p2, "10.50.1.2", 4000, 2);
  EXPECT_NE(no_df.find(" 2 received"), std::string::npos) << no_df;

  const std::string m = http_get(j.topo.n1.name(), 9137, "/metrics");
  EXPECT_EQ(metric(m, "udpring_drops_total{reason=\"truncated\"}"), 0) << m;
  EXPECT_EQ(metric(m, "udpring_drops_total{reason=\"bad_header_udp\"}"), 0) << m;
  EXPECT_EQ(metric(m, "udpring_drops_total{reason=\"bad_header_tun\"}"), 0) << m;

  // TCP both ways between the two MTUs moves every byte.
  EXPECT_EQ(tcp_transfer_verified(j.topo.p1.name(), "10.50.1.2", 5201, j.topo.p2.name(), 16ull << 20),
            16ull << 20);
  EXPECT_EQ(tcp_transfer_verified(j.topo.p2.name(), "10.50.2.2", 5202, j.topo.p1.name(), 16ull << 20),
            16ull << 20);
  EXPECT_EQ(d1->stop(), 0);
}

// Without UDP GRO the receive buffers are sized for this node's MTU: a
// larger datagram from such a peer is cut by the kernel, seen (MSG_TRUNC)
// and counted, not written half; packets that fit keep going. (The first
// datagram is lost at the router, as above.)
TEST(PathMtu, WithoutGroADatagramOverThisNodesMtuIsCountedAsTruncated) {
  UDPRING_REQUIRE_INTEGRATION();
  JumboPeer j;
  auto d1 = start_udpringd(j.topo, 1,
                           {"--workers=1", "--no-gro", "--healthz-ip=127.0.0.1", "--healthz-port=9138"});
  auto peer = j.start_peer();
  ASSERT_TRUE(ping(j.topo.p2, "10.50.1.2", 2)) << d1->log();
  const std::string no_df = no_df_ping(j.topo.p2, "10.50.1.2", 4000, 3);
  EXPECT_NE(no_df.find(" 0 received"), std::string::npos) << no_df;
  const std::string m = http_get(j.topo.n1.name(), 9138, "/metrics");
  EXPECT_GE(metric(m, "udpring_drops_total{reason=\"truncated\"}"), 2) << m;
  EXPECT_TRUE(ping(j.topo.p2, "10.50.1.2", 2)) << d1->log();
  EXPECT_EQ(d1->stop(), 0);
}

// An ICMP fragmentation needed as a router would send it about node 1's
// datagram to node 2's port 8285, naming `mtu`, sent from node 2's
// namespace (anyone on the underlay can).
void forge_fragmentation_needed(const Netns& from, uint16_t mtu) {
  std::vector<uint8_t> quote = PacketBuilder().src("192.168.77.1").dst("192.168.77.2")
                                   .protocol(17).payload_bytes(1472).build();
  quote.resize(20);
  for (uint8_t b : {0x20, 0x5d, 0x20, 0x5d, 0x05, 0xc8, 0x00, 0x00}) quote.push_back(b);  // 8285 -> 8285
  std::vector<uint8_t> icmp(8 + quote.size(), 0);
  icmp[0] = 3;  // Destination Unreachable
  icmp[1] = 4;  // fragmentation needed
  icmp[6] = static_cast<uint8_t>(mtu >> 8);
  icmp[7] = static_cast<uint8_t>(mtu);
  std::copy(quote.begin(), quote.end(), icmp.begin() + 8);
  const uint16_t c = core::internet_checksum(icmp.data(), icmp.size());
  icmp[2] = static_cast<uint8_t>(c >> 8);
  icmp[3] = static_cast<uint8_t>(c);
  run_in_netns(from.name(), [&] {
    const int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    inet_pton(AF_INET, "192.168.77.1", &to.sin_addr);
    EXPECT_EQ(sendto(fd, icmp.data(), icmp.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(icmp.size()))
        << std::strerror(errno);
    close(fd);
  });
}

TEST(PathMtu, AForgedTinyMtuShrinksNothingBelowTheKernelsFloor) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  auto d1 = start_udpringd(topo, 1, {"--workers=1"});
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  forge_fragmentation_needed(topo.n2, 100);
  ASSERT_TRUE(d1->wait_for_log("a router on the way carries at most 552 bytes", 2000)) << d1->log();
  // 552 less the outer headers: 524 goes, 525 is answered with that.
  EXPECT_NE(df_ping(topo.p1, "10.50.2.2", 524).find(" 1 received"), std::string::npos);
  const std::string over = df_ping(topo.p1, "10.50.2.2", 600);
  EXPECT_NE(over.find("mtu = 524"), std::string::npos) << over;
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 1));
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

}  // namespace
}  // namespace udpring::test
