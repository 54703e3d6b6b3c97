// End-to-end forwarding through udpringd: two nodes and two pods in network
// namespaces (see tests/support/netns.h), real TUN devices, real sockets.

#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <set>
#include <thread>

#include "core/unique_fd.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/original_peer.h"
#include "tests/support/packet_builder.h"
#include "tests/support/traffic.h"

namespace udpring::test {
namespace {

constexpr uint16_t kPort = 8285;
// Largest UDP payload that fits the 1472-byte TUN MTU: 1472 - 20 - 8.
constexpr size_t kMaxUdpPayload = 1444;

bool ping(const Netns& from, const std::string& to, int count = 3) {
  return sh(from.exec() + "ping -c " + std::to_string(count) + " -i 0.2 -W 2 -q " + to +
            " >/dev/null 2>&1") == 0;
}

// A daemon configuration under test: a name for the test and udpringd flags.
struct FlagSet {
  const char* name;
  std::vector<std::string> flags;
};

// What ctest lists after each parameterized test: its flags, not 32 bytes of hex.
void PrintTo(const FlagSet& f, std::ostream* os) {
  for (const std::string& flag : f.flags) *os << (&flag == &f.flags.front() ? "" : " ") << flag;
}

class Forwarding : public testing::TestWithParam<FlagSet> {
 protected:
  void SetUp() override {
    UDPRING_REQUIRE_INTEGRATION();
    topo_ = std::make_unique<Topology>();
    d1_ = start_udpringd(*topo_, 1, GetParam().flags);
    d2_ = start_udpringd(*topo_, 2, GetParam().flags);
  }
  void TearDown() override {
    if (HasFailure() && d1_) {
      std::cerr << "--- n1 log ---\n" << d1_->log() << "--- n2 log ---\n" << d2_->log();
    }
    // Stop cleanly and check the exit code: SIGTERM must be a clean stop.
    for (auto* d : {d1_.get(), d2_.get()}) {
      if (d) {
        EXPECT_EQ(d->stop(), 0);
      }
    }
    d1_.reset();
    d2_.reset();
    topo_.reset();
  }
  std::unique_ptr<Topology> topo_;
  std::unique_ptr<Process> d1_, d2_;
};

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

// Back-to-back super-packets to one peer share GSO trains: a train takes up
// to 44 datagrams of 1472 bytes, and a super-packet of 30 no longer leaves
// as a send of its own. Eight UDP GSO sends of 30 datagrams each are queued
// on the TUN while udpringd is stopped, so that one loop turn reads them
// all: packed, 240 segments need 6 trains; one per read would be 8.
TEST(TsoTrains, BackToBackSuperPacketsShareSends) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1"});
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2"));
  ASSERT_NE(d1->log().find("USO split"), std::string::npos) << "needs TUN UDP offload (Linux 6.2+)";
  constexpr size_t kCount = 240, kSize = 1444, kPerSend = 30;
  uint64_t reads = 0, sends = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const auto b = daemon_stats(*d1);
    ASSERT_EQ(kill(d1->pid(), SIGSTOP), 0);
    std::thread resume([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      kill(d1->pid(), SIGCONT);
    });
    const size_t got = udp_burst(topo.p2.name(), "10.50.2.2", static_cast<uint16_t>(6200 + attempt),
                                 topo.p1.name(), kCount, kSize, kPerSend, 2000);
    resume.join();
    EXPECT_EQ(got, kCount) << "datagrams lost or damaged";
    const auto a = daemon_stats(*d1);
    reads = a.at("tso_reads") - b.at("tso_reads");
    sends = a.at("gso_sends") - b.at("gso_sends");
    EXPECT_EQ(a.at("udp_tx_packets") - b.at("udp_tx_packets"), kCount);
    // The reads must have been super-packets, or there is nothing to pack.
    ASSERT_EQ(reads, kCount / kPerSend);
    if (sends < reads) break;  // else the reads straddled two loop turns; again
  }
  EXPECT_LT(sends, reads) << "each super-packet still left as a send of its own";
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// With GSO off every segment of a TSO read is its own sendmsg. Four
// transfers at once must not run the daemon out of what those sends need
// (a 4-stream run dropped 1.2 % when each took a send slot).
TEST(GsoOff, SegmentsSentSinglyLoseNothing) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--no-gso"});
  auto d2 = start_udpringd(topo, 2, {"--workers=1", "--no-gso"});
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2"));
  constexpr uint64_t kBytes = 32ull << 20;
  std::vector<uint64_t> got(4, 0);
  std::vector<std::thread> flows;
  for (size_t i = 0; i < got.size(); ++i) {
    flows.emplace_back([&, i] {
      got[i] = tcp_transfer_verified(topo.p2.name(), "10.50.2.2", static_cast<uint16_t>(5070 + i),
                                     topo.p1.name(), kBytes);
    });
  }
  for (auto& t : flows) t.join();
  for (uint64_t g : got) EXPECT_EQ(g, kBytes);
  const auto s1 = daemon_stats(*d1);
  EXPECT_GT(s1.at("tso_reads"), 100u) << "no super-packets: nothing was sent segment by segment";
  EXPECT_EQ(s1.at("gso_sends"), 0u);
  EXPECT_EQ(s1.at("no_buffer"), 0u);
  EXPECT_EQ(s1.at("drop_send_error"), 0u);
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// Without GRO the receive buffers are sized for the MTU: a bigger datagram
// is detected (MSG_TRUNC) and dropped, never forwarded cut short.
TEST(Truncation, OversizedDatagramIsCountedNotTruncated) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--no-gro"});
  const auto before = daemon_stats(*d1);
  udp_send_raw(topo.n2.name(), "192.168.77.2", "192.168.77.1", kPort,
               {PacketBuilder().dst("10.50.1.2").payload_bytes(3000).build()});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto after = daemon_stats(*d1);
  EXPECT_EQ(after.at("drop_truncated") - before.at("drop_truncated"), 1u);
  EXPECT_EQ(after.at("tun_tx_packets"), before.at("tun_tx_packets"));
  EXPECT_EQ(d1->stop(), 0);
}

// With GRO (the default) buffers hold 64 KiB, so a peer with a larger MTU
// (mixed-MTU clusters) is still understood.
TEST(Truncation, LargePacketFromPeerIsDeliveredWithGro) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1"});
  const auto before = daemon_stats(*d1);
  auto udp = std::vector<uint8_t>(8 + 2972, 0x11);
  udp[0] = 0x13; udp[1] = 0x88; udp[2] = 0x13; udp[3] = 0x89;  // ports 5000 -> 5001
  udp[4] = static_cast<uint8_t>(udp.size() >> 8);
  udp[5] = static_cast<uint8_t>(udp.size());
  udp[6] = udp[7] = 0;  // no UDP checksum (allowed for IPv4)
  udp_send_raw(topo.n2.name(), "192.168.77.2", "192.168.77.1", kPort,
               {PacketBuilder().src("10.50.2.2").dst("10.50.1.2").frag(0).payload(udp).build()});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto after = daemon_stats(*d1);
  EXPECT_EQ(after.at("drop_truncated"), before.at("drop_truncated"));
  EXPECT_EQ(after.at("tun_tx_packets") - before.at("tun_tx_packets"), 1u);
  EXPECT_EQ(d1->stop(), 0);
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

// Four segments of one TCP flow from pod2's address to pod1's, the second
// with a flipped payload byte (its TCP checksum no longer verifies), each
// mergeable with the one before it.
std::vector<std::vector<uint8_t>> flow_with_bad_second_segment(uint16_t sport) {
  std::vector<std::vector<uint8_t>> segs;
  for (uint32_t k = 0; k < 4; ++k) {
    std::vector<uint8_t> data(1000);
    for (size_t i = 0; i < data.size(); ++i) data[i] = pattern_byte(k * 1000 + i);
    segs.push_back(tcp_segment("10.50.2.2", "10.50.1.2", sport, 9, 5000 + k * 1000, 77, 0x10, data));
  }
  segs[1][100] ^= 0xff;
  return segs;
}

// Before merging TCP segments into one GSO write (which the pod's kernel
// does not check again), udpringd sums each segment's checksum, unless the
// segments came in a UDP GRO receive: the kernel builds those only from
// datagrams whose non-zero UDP checksum (covering the inner packet) it
// validated, or from a GSO send on this host. Datagrams that come singly
// may carry checksum 0 and are always summed.
class OuterChecksum : public Forwarding {};

TEST_P(OuterChecksum, GroReceivesAreTrustedSingleDatagramsAreSummed) {
  const auto& flags = GetParam().flags;
  const bool trust = std::find(flags.begin(), flags.end(), "--no-trust-outer-checksum") == flags.end();
  // One GSO send: n1 receives the four segments in one GRO receive.
  const auto before = daemon_stats(*d1_);
  udp_send_raw(topo_->n2.name(), "192.168.77.2", "192.168.77.1", kPort, flow_with_bad_second_segment(40001),
               RawSend::kOneGsoSend);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto after = daemon_stats(*d1_);
  EXPECT_EQ(after.at("gro_receives") - before.at("gro_receives"), 1u);
  EXPECT_EQ(after.at("tun_tx_packets") - before.at("tun_tx_packets"), 4u);
  if (trust) {
    EXPECT_EQ(after.at("coalesce_checksum_failures"), before.at("coalesce_checksum_failures"));
    EXPECT_EQ(after.at("coalesced_writes") - before.at("coalesced_writes"), 1u) << "all four in one write";
  } else {
    EXPECT_GE(after.at("coalesce_checksum_failures") - before.at("coalesce_checksum_failures"), 1u);
  }

  // The same flow as single datagrams with UDP checksum 0, queued while the
  // daemon is stopped so that one loop turn sees all four: the bad segment
  // is caught in both modes. (Retried in case a turn split them anyway.)
  uint64_t failures = 0;
  for (int attempt = 0; attempt < 3 && failures == 0; ++attempt) {
    const auto b = daemon_stats(*d1_);
    ASSERT_EQ(kill(d1_->pid(), SIGSTOP), 0);
    udp_send_raw(topo_->n2.name(), "192.168.77.2", "192.168.77.1", kPort,
                 flow_with_bad_second_segment(static_cast<uint16_t>(40002 + attempt)),
                 RawSend::kSinglyNoChecksum);
    ASSERT_EQ(kill(d1_->pid(), SIGCONT), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const auto a = daemon_stats(*d1_);
    EXPECT_EQ(a.at("gro_receives"), b.at("gro_receives")) << "single datagrams were merged by GRO";
    EXPECT_EQ(a.at("tun_tx_packets") - b.at("tun_tx_packets"), 4u);
    failures = a.at("coalesce_checksum_failures") - b.at("coalesce_checksum_failures");
  }
  EXPECT_GE(failures, 1u) << "a bad segment from a datagram without checksum was not caught";
  EXPECT_TRUE(ping(topo_->p1, "10.50.2.2"));
}

INSTANTIATE_TEST_SUITE_P(Flags, OuterChecksum,
                         testing::Values(FlagSet{"trusted", {"--workers=1"}},
                                         FlagSet{"summed", {"--workers=1", "--no-trust-outer-checksum"}}),
                         [](const auto& info) { return std::string(info.param.name); });

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

// udpringd on node 1, the test's own implementation of the original protocol
// on node 2 (one datagram per packet, from and to port 8285): traffic must
// flow both ways, with every fast path on and with each switched off.
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

// An underlay NIC with UDP segmentation offload (veth's default; mlx5, ice and
// virtio-net with host USO have it too) carries our GSO sends unsegmented, so
// the peer's kernel receives one super-datagram: a peer with UDP_GRO takes it
// whole, any other socket gets it segmented by the kernel. Every byte must
// arrive either way, also at a peer speaking the original per-packet protocol.
TEST(UsoUnderlay, TransfersAreByteExactWithGroPerPacketAndOriginalPeers) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::string hint = "no UDP segmentation offload (tx-udp-segmentation off)";
  for (const Netns* n : {&topo.n1, &topo.n2}) {
    sh_ok(n->exec() + "ethtool -K u0 tx-udp-segmentation off");
  }
  {
    auto d = start_udpringd(topo, 1, {"--workers=1"});  // the topology starts without USO
    EXPECT_NE(d->log().find(hint), std::string::npos) << d->log();
    EXPECT_EQ(d->stop(), 0);
  }
  for (const Netns* n : {&topo.n1, &topo.n2}) {
    sh_ok(n->exec() + "ethtool -K u0 tx-udp-segmentation on");
    ASSERT_NE(sh_out(n->exec() + "ethtool -k u0").find("tx-udp-segmentation: on"),
              std::string::npos);
  }
  auto d1 = start_udpringd(topo, 1, {"--workers=1"});
  EXPECT_EQ(d1->log().find(hint), std::string::npos) << d1->log();
  auto transfer_both_ways = [&](uint16_t port, const std::string& what) {
    EXPECT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", port, topo.p1.name(), 32 << 20),
              32u << 20) << what;
    EXPECT_EQ(tcp_transfer_verified(topo.p1.name(), "10.50.1.2", port + 1, topo.p2.name(),
                                    16 << 20),
              16u << 20) << what;
  };
  {
    auto d2 = start_udpringd(topo, 2, {"--workers=1"});
    transfer_both_ways(5040, "peer with UDP GRO");
    const auto s2 = daemon_stats(*d2);
    EXPECT_GT(s2.at("gro_receives"), 0u);
    EXPECT_GT(s2.at("coalesced_writes"), 0u);
    EXPECT_EQ(s2.at("coalesce_checksum_failures"), 0u);
    EXPECT_EQ(s2.at("drop_truncated"), 0u);
    EXPECT_EQ(d2->stop(), 0);
  }
  {
    auto d2 = start_udpringd(topo, 2, {"--workers=1", "--no-gro"});
    transfer_both_ways(5042, "peer without UDP GRO");
    const auto s2 = daemon_stats(*d2);
    EXPECT_EQ(s2.at("gro_receives"), 0u);
    EXPECT_EQ(s2.at("drop_truncated"), 0u) << "a super-datagram reached a socket without GRO";
    EXPECT_GT(s2.at("udp_rx_packets"), 20000u);  // 32 MiB in <= 1444-byte datagrams
    EXPECT_EQ(d2->stop(), 0);
  }
  {
    OriginalPeer peer(topo.n2.name(), "flannel0", "10.50.2.0", 1472, "10.50.0.0/16",
                      "192.168.77.2", kPort, "10.50.1.0/24", "192.168.77.1");
    transfer_both_ways(5044, "original-protocol peer");
    EXPECT_GT(peer.udp_to_tun(), 20000u);
  }
  const auto s1 = daemon_stats(*d1);
  EXPECT_GT(s1.at("gso_sends"), 0u) << "no GSO send crossed the USO underlay";
  EXPECT_EQ(s1.at("drop_send_error"), 0u);
  EXPECT_EQ(s1.at("gso_fallback"), 0u);
  EXPECT_EQ(d1->stop(), 0);
}

// --busy-poll=auto: a worker spins after request/response traffic, where the
// reply comes back within the spin and a sleep would cost a wake-up, but not
// after bulk turns (a TSO read or GRO receive each turn), where spinning only
// burns CPU.
TEST(BusyPoll, SpinsForRequestResponseButNotForBulk) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1"});
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2"));
  const auto s0 = daemon_stats(*d1);
  EXPECT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", 5050, topo.p1.name(), 64 << 20),
            64u << 20);
  const auto s1 = daemon_stats(*d1);
  const uint64_t tso = s1.at("tso_reads") - s0.at("tso_reads");
  const uint64_t bulk_spins = s1.at("spin_hits") + s1.at("spin_misses") - s0.at("spin_hits") -
                              s0.at("spin_misses");
  EXPECT_GT(tso, 500u);  // 64 MiB in <= 64 KiB super-packets: >= 1024 if all were full
  // The ACKs coming back make small turns, which may spin; the data turns must
  // not (spinning after every turn gave 915 spins for 1044 reads). Slow start
  // and a starved sender make some reads small, hence the margin.
  EXPECT_LT(bulk_spins, tso / 2) << "spun " << bulk_spins << " times for " << tso << " TSO reads";

  // Pings 2 ms apart: each request is followed by its reply within a spin.
  ASSERT_TRUE(sh(topo.p1.exec() + "ping -c 300 -i 0.002 -W 1 -q 10.50.2.2 >/dev/null 2>&1") == 0);
  const auto s2 = daemon_stats(*d1);
  EXPECT_GT(s2.at("spin_hits") - s1.at("spin_hits"), 30u) << "request/response did not spin";
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// A restart right after a stop must come up on the same port, although the
// kernel releases the old io_uring's registered socket asynchronously (a
// flags sweep of the benchmark hit EADDRINUSE here).
TEST(DaemonSetup, RestartsAtOnceOnTheSamePort) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  for (const char* workers : {"--workers=1", "--workers=2", "--workers=2", "--workers=1"}) {
    auto d1 = start_udpringd(topo, 1, {workers, "--healthz-ip=127.0.0.1", "--healthz-port=9102"});
    EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << workers << "\n" << d1->log();
    // With 2 workers the reuseport group must be new, not the exiting
    // daemon's: d2 (1 worker) sends from 8285, so (8285 mod 840) mod 2 = 1.
    if (std::string(workers) == "--workers=2") {
      const std::string m = http_get(topo.n1.name(), 9102, "/metrics");
      EXPECT_EQ(worker_metric(m, "udpring_worker_udp_rx_packets_total", 0), 0) << m;
      EXPECT_GE(worker_metric(m, "udpring_worker_udp_rx_packets_total", 1), 2) << m;
    }
    EXPECT_EQ(d1->stop(), 0);
  }
  EXPECT_EQ(d2->stop(), 0);
}

// /readyz and /metrics of a running daemon, scraped inside its namespace.
TEST(Endpoints, ReadyzAndMetricsDuringTraffic) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--healthz-ip=127.0.0.1", "--healthz-port=9101"});
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  EXPECT_EQ(http_get(topo.n1.name(), 9101, "/readyz").rfind("HTTP/1.0 200", 0), 0u);
  EXPECT_EQ(http_get(topo.n1.name(), 9101, "/healthz").rfind("HTTP/1.0 200", 0), 0u);
  const std::string before = http_get(topo.n1.name(), 9101, "/metrics");
  ASSERT_GE(metric(before, "udpring_tun_rx_packets_total"), 0) << before;
  EXPECT_EQ(metric(before, "udpring_routes"), 1);
  EXPECT_NE(before.find("udpring_drops_total{reason=\"no_route\"}"), std::string::npos) << before;
  // What the flags asked for and the kernel granted; one worker needs no
  // steering. USO (6.2+) and READ_MULTISHOT (6.7+) depend on the kernel: the
  // metrics must agree with the features line the workers logged.
  const std::string log = d1->log();
  const std::pair<const char*, bool> asked[] = {
      {"tun_offload", true}, {"tcp_coalesce", true}, {"gso", true}, {"gro", true},
      {"uso", log.find(", USO split") != std::string::npos},
      {"multishot_read", log.find(", TUN READ_MULTISHOT") != std::string::npos}};
  for (const auto& [path, granted] : asked) {
    EXPECT_EQ(metric(before, "udpring_fast_path{path=\"" + std::string(path) + "\"}"), granted ? 1 : 0)
        << path;
    EXPECT_EQ(metric(before, "udpring_fast_path_refused{path=\"" + std::string(path) + "\"}"),
              granted ? 0 : 1)
        << path;
  }
  for (const char* path : {"send_zc", "sqpoll", "tun_steering", "port_steering"}) {
    EXPECT_EQ(metric(before, "udpring_fast_path{path=\"" + std::string(path) + "\"}"), 0) << path;
    EXPECT_EQ(metric(before, "udpring_fast_path_refused{path=\"" + std::string(path) + "\"}"), 0)
        << path;
  }
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2"));
  const std::string after = http_get(topo.n1.name(), 9101, "/metrics");
  EXPECT_GE(metric(after, "udpring_tun_rx_packets_total") - metric(before, "udpring_tun_rx_packets_total"), 3);
  EXPECT_GE(metric(after, "udpring_udp_rx_packets_total") - metric(before, "udpring_udp_rx_packets_total"), 3);
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// READY=1 reaches $NOTIFY_SOCKET once the daemon is ready (systemd Type=notify).
TEST(Endpoints, NotifiesSystemdWhenReady) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::string sock_path = topo.dir + "/notify.sock";
  core::UniqueFd rx(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, sock_path.c_str(), sock_path.size() + 1);
  ASSERT_EQ(bind(rx.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  setenv("NOTIFY_SOCKET", sock_path.c_str(), 1);  // inherited by the child only
  // A flanneld flag udpringd does not implement is accepted and named in a warning.
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--ip-blackhole-route"});
  unsetenv("NOTIFY_SOCKET");
  EXPECT_NE(d1->log().find("--ip-blackhole-route=true: a flanneld flag udpringd does not implement yet"),
            std::string::npos)
      << d1->log();
  pollfd pfd{rx.get(), POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 3000), 1) << "no notification";
  char buf[64] = {};
  ASSERT_GT(recv(rx.get(), buf, sizeof buf - 1, 0), 0);
  EXPECT_STREQ(buf, "READY=1");
  EXPECT_EQ(d1->stop(), 0);
}

// Setup failures are reported with the object named and leave nothing behind.
TEST(DaemonSetup, BadConfigFailsLoudAndCleanly) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::string vxlan_conf = topo.dir + "/vxlan.json";
  sh_ok("echo '{\"Network\":\"10.50.0.0/16\",\"Backend\":{\"Type\":\"vxlan\"}}' > " + vxlan_conf);
  // Each start must exit 1 with a message naming the bad input.
  struct Refusal {
    std::string conf;
    std::vector<std::string> flags;
    std::string message;
  };
  const Refusal refusals[] = {
      {vxlan_conf, {"--iface=u0"}, "Backend.Type \"vxlan\" is not supported"},
      {topo.net_conf, {"--iface=nosuchif0"}, "nosuchif0"},
      {topo.net_conf, {"--iface=u0", "--buffers=32768"}, "--buffers 32768 is too many"},
      {topo.net_conf, {"--iface=u0", "--buffer-size=2048"}, "--buffer-size 2048 is too small"},
  };
  int n = 0;
  for (const Refusal& r : refusals) {
    std::vector<std::string> argv = {UDPRINGD_PATH, "--subnet-mgr=static", "--net-config-path=" + r.conf,
                                     "--static-subnet=10.50.1.0/24"};
    argv.insert(argv.end(), r.flags.begin(), r.flags.end());
    Process p(topo.n1.name(), argv, topo.dir + "/bad" + std::to_string(n++) + ".log");
    EXPECT_EQ(p.wait_exit(3000), 1) << r.message;
    EXPECT_NE(p.log().find(r.message), std::string::npos) << p.log();
    // The failed start left no TUN device behind.
    EXPECT_NE(sh("ip -n " + topo.n1.name() + " link show flannel0 >/dev/null 2>&1"), 0) << r.message;
  }
}

}  // namespace
}  // namespace udpring::test
