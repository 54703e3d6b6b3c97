// End-to-end forwarding through udpringd: two nodes and two pods in network
// namespaces (see tests/support/netns.h), real TUN devices, real sockets.
// What every flag set must carry, the single packets' details, and interop
// with the original protocol. Offloads are offload_test.cc's, daemon setup
// and endpoints daemon_test.cc's, steering port_steering_test.cc's and
// tun_steering_test.cc's.

#include <arpa/inet.h>
#include <sys/socket.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "tests/support/netns.h"
#include "tests/support/original_peer.h"
#include "tests/support/packet_builder.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

namespace udpring::test {
namespace {

// Largest UDP payload that fits the 1472-byte TUN MTU: 1472 - 20 - 8.
constexpr size_t kMaxUdpPayload = 1444;

class Forwarding : public TwoNodes {};

TEST_P(Forwarding, PingBothWays) {
  // subnet.env was written before "ready", in flannel's exact format.
  std::ifstream env(topo_->dir + "/subnet-n1.env");
  std::stringstream text;
  text << env.rdbuf();
  EXPECT_EQ(text.str(),
            "FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.1.1/24\nFLANNEL_MTU=1472\n"
            "FLANNEL_IPMASQ=false\n");
  EXPECT_TRUE(ping(topo_->p1, "10.50.2.2"));
  EXPECT_TRUE(ping(topo_->p2, "10.50.1.2"));
  const auto s1 = daemon_stats(*d1_);
  EXPECT_GE(s1.at("udp_tx_packets"), 3u);
  EXPECT_GE(s1.at("tun_tx_packets"), 3u);
}

TEST_P(Forwarding, TcpTransferOf64MiBIsByteExact) {
  constexpr uint64_t kBytes = 64ull << 20;
  EXPECT_EQ(tcp_transfer_verified(topo_->p2.name(), "10.50.2.2", 5001, topo_->p1.name(), kBytes),
            kBytes);
  // And the other way, smaller.
  EXPECT_EQ(tcp_transfer_verified(topo_->p1.name(), "10.50.1.2", 5002, topo_->p2.name(), 8 << 20),
            8u << 20);
  const auto s1 = daemon_stats(*d1_);
  EXPECT_GE(s1.at("udp_tx_bytes"), kBytes);
  EXPECT_EQ(s1.at("drop_truncated"), 0u);
  EXPECT_EQ(s1.at("drop_bad_header_udp"), 0u);
  // --no-gso means one datagram per sendmsg for TSO reads too (it once
  // covered only packets read singly).
  const auto& flags = GetParam().flags;
  const bool no_gso = std::find(flags.begin(), flags.end(), "--no-gso") != flags.end();
  const auto s2 = daemon_stats(*d2_);
  if (no_gso) {
    EXPECT_EQ(s1.at("gso_sends"), 0u);
    EXPECT_EQ(s2.at("gso_sends"), 0u);
  } else if (d1_->log().find("UDP GSO self-test passed") != std::string::npos) {
    EXPECT_GT(s1.at("gso_sends"), 0u);
  }
  // Zero copy cannot carry a TSO read's train (more iovecs than a send may
  // pin): the first such send turns it off, which the log must say. (A
  // kernel without SENDMSG_ZC, before 6.1, never starts it.)
  if (std::find(flags.begin(), flags.end(), "--send-zc") != flags.end() &&
      d1_->log().find(", SENDMSG_ZC") != std::string::npos) {
    EXPECT_GT(s1.at("send_zc_fallback"), 0u);
    EXPECT_TRUE(d1_->wait_for_log("worker 0: a zero-copy send was refused with EMSGSIZE", 2000))
        << d1_->log();
  }
}

TEST_P(Forwarding, UdpDatagramsOfOneByteAndOfTheLargestSize) {
  for (size_t size : {size_t{1}, kMaxUdpPayload}) {
    std::vector<uint8_t> payload(size);
    for (size_t i = 0; i < size; ++i) payload[i] = pattern_byte(i + size);
    const auto got = udp_exchange(topo_->p2.name(), "10.50.2.2", 6000, topo_->p1.name(), payload);
    ASSERT_TRUE(got.has_value()) << size << "-byte datagram was not delivered";
    EXPECT_EQ(*got, payload) << size;
    const auto back = udp_exchange(topo_->p1.name(), "10.50.1.2", 6001, topo_->p2.name(), payload);
    ASSERT_TRUE(back.has_value()) << size << "-byte datagram was not delivered back";
    EXPECT_EQ(*back, payload);
  }
}

// Every fast path on (the defaults, with 1 and 2 workers), then each switched
// off in turn: all must carry the same bytes.
INSTANTIATE_TEST_SUITE_P(
    Flags, Forwarding,
    testing::Values(FlagSet{"defaults_1_worker", {"--workers=1"}},
                    FlagSet{"defaults_2_workers", {"--workers=2"}},
                    FlagSet{"no_tun_offload", {"--workers=1", "--no-tun-offload"}},
                    FlagSet{"no_coalesce", {"--workers=1", "--no-coalesce"}},
                    FlagSet{"no_gso", {"--workers=1", "--no-gso"}},
                    FlagSet{"no_gro", {"--workers=1", "--no-gro"}},
                    FlagSet{"no_multishot", {"--workers=2", "--no-multishot"}},
                    FlagSet{"no_uso", {"--workers=1", "--no-uso"}},
                    FlagSet{"no_port_steering", {"--workers=2", "--no-port-steering"}},
                    FlagSet{"no_tun_steering", {"--workers=2", "--no-tun-steering"}},
                    FlagSet{"no_source_port_spread", {"--workers=2", "--no-source-port-spread"}},
                    FlagSet{"peer_check_peer", {"--workers=1", "--peer-check=peer"}},
                    FlagSet{"peer_check_off", {"--workers=1", "--peer-check=off"}},
                    FlagSet{"no_peer_check", {"--workers=1", "--no-peer-check"}},
                    FlagSet{"no_trust_outer_checksum", {"--workers=1", "--no-trust-outer-checksum"}},
                    FlagSet{"all_off", {"--workers=2", "--no-tun-offload", "--no-gso", "--no-gro",
                                        "--no-multishot"}},
                    FlagSet{"tuning", {"--workers=2", "--cpu-affinity=0,1", "--batch=16",
                                       "--ring-entries=256", "--buffers=512", "--socket-rcvbuf=1048576"}},
                    // Few buffers and a large SQ: the CQ must still be at least the SQ.
                    FlagSet{"few_buffers", {"--workers=1", "--ring-entries=2048", "--buffers=32"}},
                    // MTU-sized buffers allow many; the CQ stays within the kernel's 65536.
                    FlagSet{"many_buffers", {"--workers=1", "--no-tun-offload", "--no-gro",
                                             "--buffers=16384"}},
                    FlagSet{"send_zc_busy_poll", {"--workers=1", "--send-zc", "--busy-poll=50"}},
                    FlagSet{"sqpoll", {"--workers=1", "--sqpoll"}}),
    [](const auto& info) { return std::string(info.param.name); });

// The remaining tests look at single packets; one worker keeps counters in one place.
class ForwardingDetail : public Forwarding {};

// What the wire carries is flannel's format: UDP 8285 -> 8285 between the
// node addresses, payload = exactly the inner packet read from the TUN with
// TTL - 1 and the header checksum fixed, nothing added.
TEST_P(ForwardingDetail, WireFormatMatchesFlannel) {
  std::vector<uint8_t> marker(100);
  for (size_t i = 0; i < marker.size(); ++i) marker[i] = static_cast<uint8_t>(0xa0 ^ i);
  const auto caps = capture_during(topo_->n1.name(), {"flannel0", "u0"}, [&] {
    ASSERT_TRUE(udp_exchange(topo_->p2.name(), "10.50.2.2", 6002, topo_->p1.name(), marker));
  });
  const std::vector<uint8_t>* inner = nullptr;
  const std::vector<uint8_t>* outer = nullptr;
  auto carries_marker = [&](const std::vector<uint8_t>& p, size_t at) {
    return p.size() >= at + marker.size() &&
           std::equal(marker.begin(), marker.end(), p.end() - static_cast<long>(marker.size()));
  };
  for (const Captured& c : caps) {
    if (c.ifname == "flannel0" && c.outgoing && carries_marker(c.bytes, 28)) inner = &c.bytes;
    if (c.ifname == "u0" && c.outgoing && carries_marker(c.bytes, 56)) outer = &c.bytes;
  }
  ASSERT_NE(inner, nullptr) << "inner packet not seen on flannel0";
  ASSERT_NE(outer, nullptr) << "encapsulated packet not seen on u0";
  const auto& o = *outer;
  ASSERT_EQ(o.size(), inner->size() + 28) << "anything besides IPv4+UDP headers was added";
  EXPECT_EQ(o[0], 0x45);
  EXPECT_EQ(o[9], 17);  // UDP
  char src[16], dst[16];
  inet_ntop(AF_INET, &o[12], src, sizeof src);
  inet_ntop(AF_INET, &o[16], dst, sizeof dst);
  EXPECT_STREQ(src, "192.168.77.1");
  EXPECT_STREQ(dst, "192.168.77.2");
  EXPECT_EQ((o[20] << 8) | o[21], kPort);  // source port
  EXPECT_EQ((o[22] << 8) | o[23], kPort);  // destination port
  EXPECT_EQ(static_cast<size_t>((o[24] << 8) | o[25]), inner->size() + 8);  // UDP length
  // Payload: the inner packet with TTL one lower and a valid checksum.
  std::vector<uint8_t> payload(o.begin() + 28, o.end());
  EXPECT_EQ(payload[8], (*inner)[8] - 1);
  EXPECT_TRUE(header_checksum_ok(payload));
  // With TUN offload the kernel hands over the inner UDP checksum as a
  // partial sum (NEEDS_CSUM) and the capture on flannel0 shows it so;
  // udpringd completes it, so the wire must carry a verifying checksum.
  for (size_t b = 0; b < payload.size(); ++b) {
    if (b == 8 || b == 10 || b == 11 || b == 26 || b == 27) continue;
    ASSERT_EQ(payload[b], (*inner)[b]) << "payload differs from the TUN packet at byte " << b;
  }
  std::vector<uint8_t> pseudo(payload.begin() + 12, payload.begin() + 20);
  const size_t l4 = payload.size() - 20;
  pseudo.insert(pseudo.end(), {0, 17, static_cast<uint8_t>(l4 >> 8), static_cast<uint8_t>(l4)});
  EXPECT_EQ(core::ones_sum(payload.data() + 20, l4, core::ones_sum(pseudo.data(), 12)), 0xffffu)
      << "inner UDP checksum on the wire does not verify";
}

TEST_P(ForwardingDetail, PingToAnAddressWithNoPeerGetsNetUnreachable) {
  const std::string out = sh_out(topo_->p1.exec() + "ping -c 2 -i 0.2 -W 1 10.50.99.1 2>&1");
  EXPECT_NE(out.find("From 10.50.1.0"), std::string::npos) << out;
  EXPECT_NE(out.find("Destination Net Unreachable"), std::string::npos) << out;
  const auto s = daemon_stats(*d1_);
  EXPECT_GE(s.at("drop_no_route"), 2u);
  EXPECT_GE(s.at("icmp_unreach_sent"), 2u);
}

TEST_P(ForwardingDetail, PacketWhoseTtlRunsOutIsNotForwarded) {
  const std::vector<uint8_t> payload = {1, 2, 3};
  // TTL 2 from the pod: node 1's kernel makes it 1 on the way into flannel0,
  // and udpringd must not send it on with TTL 0.
  EXPECT_FALSE(udp_exchange(topo_->p2.name(), "10.50.2.2", 6003, topo_->p1.name(), payload,
                            {.ttl = 2}, 800));
  EXPECT_GE(daemon_stats(*d1_).at("drop_ttl_expired"), 1u);
  // Pod to pod costs 4 TTL (two kernel hops, encap, decap): TTL 5 still arrives.
  EXPECT_TRUE(udp_exchange(topo_->p2.name(), "10.50.2.2", 6004, topo_->p1.name(), payload,
                           {.ttl = 5}));

  // The decap side: a datagram from the peer whose inner TTL is 1 is dropped.
  const auto s_before = daemon_stats(*d1_);
  auto inner = PacketBuilder().src("10.50.2.2").dst("10.50.1.2").ttl(1).payload({0, 1, 0, 2, 0, 8, 0, 0}).build();
  udp_send_raw(topo_->n2.name(), "192.168.77.2", "192.168.77.1", kPort, {inner});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_GT(daemon_stats(*d1_).at("drop_ttl_expired"), s_before.at("drop_ttl_expired"));
}

// Garbage on port 8285 is counted and dropped; good traffic keeps flowing.
TEST_P(ForwardingDetail, GarbageDatagramsAreCountedAndDoNotHurt) {
  std::mt19937 rng(7);
  std::vector<std::vector<uint8_t>> junk;
  for (int i = 0; i < 50; ++i) {
    std::vector<uint8_t> d(1 + rng() % 1400);
    for (auto& b : d) b = static_cast<uint8_t>(rng());
    d[0] = static_cast<uint8_t>(0x50 | (d[0] & 0x0f));  // never a valid IPv4 version
    junk.push_back(d);
  }
  junk.push_back({0x45, 0, 0});                                       // truncated header
  junk.push_back(std::vector<uint8_t>(19, 0x45));                     // 19 bytes
  auto v6 = std::vector<uint8_t>(60, 0);
  v6[0] = 0x60;                                                       // an IPv6 header
  junk.push_back(v6);
  auto lying = PacketBuilder().dst("10.50.1.2").payload_bytes(40).build();
  lying[3] = static_cast<uint8_t>(lying[3] + 10);                     // total length > datagram
  junk.push_back(lying);
  const size_t n_bad = junk.size();
  const auto before = daemon_stats(*d1_);
  udp_send_raw(topo_->n2.name(), "192.168.77.2", "192.168.77.1", kPort, junk);
  // From an address that is no peer.
  sh_ok("ip -n " + topo_->n2.name() + " addr add 192.168.77.3/24 dev u0");
  udp_send_raw(topo_->n2.name(), "192.168.77.3", "192.168.77.1", kPort,
               {PacketBuilder().src("10.50.2.2").dst("10.50.1.2").build()});
  EXPECT_TRUE(ping(topo_->p1, "10.50.2.2"));
  EXPECT_TRUE(ping(topo_->p2, "10.50.1.2"));
  ASSERT_TRUE(d1_->running());
  const auto after = daemon_stats(*d1_);
  EXPECT_EQ(after.at("drop_bad_header_udp") - before.at("drop_bad_header_udp"), n_bad);
  EXPECT_EQ(after.at("drop_unknown_peer") - before.at("drop_unknown_peer"), 1u);
  EXPECT_GE(after.at("tun_tx_packets") - before.at("tun_tx_packets"), 6u);  // the pings
}

// Bursts of UDP, sent plainly and as UDP GSO by the pod: with TUN offload
// the GSO sends reach udpringd as UDP super-packets (USO) to split, and
// runs of one flow are merged into UDP GSO writes on the other side. Every
// datagram must arrive intact either way.
TEST_P(ForwardingDetail, UdpBurstsArriveIntact) {
  constexpr size_t kCount = 400;
  const auto before1 = daemon_stats(*d1_);
  const auto before2 = daemon_stats(*d2_);
  EXPECT_GE(udp_burst(topo_->p2.name(), "10.50.2.2", 6100, topo_->p1.name(), kCount, 1000, 1),
            kCount * 95 / 100);
  EXPECT_GE(udp_burst(topo_->p2.name(), "10.50.2.2", 6101, topo_->p1.name(), kCount, 1000, 20),
            kCount * 95 / 100);
  const auto after1 = daemon_stats(*d1_);
  const auto after2 = daemon_stats(*d2_);
  EXPECT_EQ(after2.at("coalesce_checksum_failures"), before2.at("coalesce_checksum_failures"));
  EXPECT_EQ(after1.at("drop_bad_header_tun"), before1.at("drop_bad_header_tun"));
  const bool offload = d1_->log().find("USO split") != std::string::npos;
  if (offload) {
    EXPECT_NE(d1_->log().find("TUN TCP GSO write self-test passed"), std::string::npos);
    EXPECT_NE(d1_->log().find("TUN UDP GSO write self-test passed"), std::string::npos);
    EXPECT_NE(d1_->log().find("UDP GSO self-test passed"), std::string::npos);
    EXPECT_GT(after1.at("tso_reads"), before1.at("tso_reads")) << "no UDP super-packet was split";
    EXPECT_GT(after2.at("coalesced_writes"), before2.at("coalesced_writes")) << "no UDP run merged";
  } else {
    EXPECT_EQ(after1.at("tso_reads"), before1.at("tso_reads"));
  }
}

// A burst leaves as UDP GSO sends, yet every datagram on the wire is one
// inner packet no larger than the TUN MTU, as a stock flannel peer expects.
TEST_P(ForwardingDetail, BurstsStayOnePacketPerDatagramOnTheWire) {
  const auto caps = capture_during(topo_->n1.name(), {"u0"}, [&] {
    EXPECT_EQ(tcp_transfer_verified(topo_->p2.name(), "10.50.2.2", 5010, topo_->p1.name(), 4 << 20),
              4u << 20);
  });
  size_t datagrams = 0;
  for (const Captured& c : caps) {
    if (!c.outgoing || c.bytes.size() < 28 || c.bytes[9] != 17) continue;
    const auto& o = c.bytes;
    if (((o[22] << 8) | o[23]) != kPort) continue;
    ++datagrams;
    ASSERT_LE(o.size(), 1500u) << "a GSO super-datagram reached the wire";
    const size_t udp_len = static_cast<size_t>((o[24] << 8) | o[25]);
    ASSERT_EQ(udp_len + 20, o.size());
    std::vector<uint8_t> inner(o.begin() + 28, o.end());
    ASSERT_EQ(core::validate_ipv4(inner.data(), inner.size()), core::Ipv4Error::kOk);
    ASSERT_TRUE(header_checksum_ok(inner));
  }
  EXPECT_GT(datagrams, 1000u);  // ~2950 sent; the check is on each one seen
  EXPECT_GT(daemon_stats(*d1_).at("gso_sends"), 0u) << "no GSO batching happened";
}

INSTANTIATE_TEST_SUITE_P(Flags, ForwardingDetail,
                         testing::Values(FlagSet{"offload", {"--workers=1"}},
                                         FlagSet{"no_offload", {"--workers=1", "--no-tun-offload"}}),
                         [](const auto& info) { return std::string(info.param.name); });

// udpringd on node 1, the test's own implementation of the original protocol
// on node 2 (one datagram per packet, from and to port 8285): traffic must
// flow both ways, with every fast path on and with each switched off. All
// run under the default --peer-check=strict: a stock flannel peer's traffic
// (its pods' sources, our pods' destinations) must pass it.
class Interop : public testing::TestWithParam<FlagSet> {};

TEST_P(Interop, WithAnIndependentOriginalProtocolPeer) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, GetParam().flags);
  OriginalPeer peer(topo.n2.name(), "flannel0", "10.50.2.0", 1472, "10.50.0.0/16", "192.168.77.2",
                    kPort, "10.50.1.0/24", "192.168.77.1");
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2"));
  EXPECT_TRUE(ping(topo.p2, "10.50.1.2"));
  EXPECT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", 5003, topo.p1.name(), 16 << 20),
            16u << 20);
  EXPECT_EQ(tcp_transfer_verified(topo.p1.name(), "10.50.1.2", 5004, topo.p2.name(), 16 << 20),
            16u << 20);
  EXPECT_GT(peer.tun_to_udp(), 1000u);
  EXPECT_GT(peer.udp_to_tun(), 1000u);
  const auto s = daemon_stats(*d1);
  EXPECT_EQ(s.at("drop_bad_header_udp"), 0u);
  EXPECT_EQ(s.at("drop_send_error"), 0u);
  EXPECT_EQ(d1->stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Flags, Interop,
    testing::Values(FlagSet{"defaults", {"--workers=2"}},
                    FlagSet{"no_tun_offload", {"--workers=2", "--no-tun-offload"}},
                    FlagSet{"no_coalesce", {"--workers=2", "--no-coalesce"}},
                    FlagSet{"no_gso", {"--workers=2", "--no-gso"}},
                    FlagSet{"no_gro", {"--workers=2", "--no-gro"}},
                    FlagSet{"no_multishot", {"--workers=2", "--no-multishot"}},
                    FlagSet{"no_uso", {"--workers=2", "--no-uso"}},
                    FlagSet{"no_steering", {"--workers=2", "--no-port-steering", "--no-tun-steering",
                                            "--no-source-port-spread"}},
                    FlagSet{"no_trust_outer_checksum", {"--workers=2", "--no-trust-outer-checksum"}},
                    FlagSet{"send_zc", {"--workers=2", "--send-zc"}}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace udpring::test
