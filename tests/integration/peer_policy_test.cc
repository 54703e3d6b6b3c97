// --peer-check, tried as an attacker would: node 1 runs udpringd with node 2
// (192.168.77.2) and a third node C (192.168.77.3, an address on node 2's
// link) as peers. Node 2 plays a peer that sends crafted datagrams, or a pod
// behind its masquerade. Each refused datagram is shown to be delivered with
// --peer-check=off, so "not delivered" means the policy dropped it, not that
// the test's packet was wrong.

#include <gtest/gtest.h>

#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/packet_builder.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

namespace udpring::test {
namespace {

const std::string kNodeA = "192.168.77.1";
const std::string kPeerB = "192.168.77.2";
const std::string kPeerC = "192.168.77.3";

// An inner IPv4/UDP packet (UDP checksum 0: none) carrying `marker`.
std::vector<uint8_t> inner_udp(const std::string& src, const std::string& dst, uint16_t dport,
                               const std::string& marker) {
  std::vector<uint8_t> udp(8 + marker.size());
  const uint16_t sport = 40000, len = static_cast<uint16_t>(udp.size());
  udp[0] = sport >> 8, udp[1] = sport & 0xff;
  udp[2] = static_cast<uint8_t>(dport >> 8), udp[3] = static_cast<uint8_t>(dport);
  udp[4] = static_cast<uint8_t>(len >> 8), udp[5] = static_cast<uint8_t>(len);
  std::copy(marker.begin(), marker.end(), udp.begin() + 8);
  return PacketBuilder().src(src).dst(dst).payload(udp).build();
}

bool ends_with(const std::optional<std::vector<uint8_t>>& got, const std::string& marker) {
  return got && got->size() >= marker.size() &&
         std::string(got->end() - static_cast<long>(marker.size()), got->end()) == marker;
}

class PeerPolicy : public testing::Test {
 protected:
  void SetUp() override {
    UDPRING_REQUIRE_INTEGRATION();
    topo_ = std::make_unique<Topology>();
    sh_ok("ip -n " + topo_->n2.name() + " addr add " + kPeerC + "/24 dev u0");
  }
  void TearDown() override {
    if (HasFailure()) {
      for (auto* d : {d1_.get(), d2_.get()}) {
        if (d) {
          std::cerr << "--- log ---\n" << d->log();
        }
      }
    }
    for (auto* d : {d1_.get(), d2_.get()}) {
      if (d) {
        EXPECT_EQ(d->stop(), 0);
      }
    }
    d1_.reset();
    d2_.reset();
    topo_.reset();
  }

  // udpringd on node 1 with C as a third peer, plus `flags`.
  void start_a(std::vector<std::string> flags) {
    if (d1_) {
      EXPECT_EQ(d1_->stop(), 0);
    }
    d1_.reset();
    flags.push_back("--workers=1");
    flags.push_back("--static-peer=10.50.3.0/24=" + kPeerC);
    d1_ = start_udpringd(*topo_, 1, flags);
  }

  // Sends `inner` to node 1's port from peer B's address.
  void send_from_b(const std::vector<uint8_t>& inner) {
    udp_send_raw(topo_->n2.name(), kPeerB, kNodeA, kPort, {inner});
  }

  // Whether `inner`, sent by peer B, reaches ns/ip:port under `mode`; also
  // the increase of node 1's `counter`.
  struct Outcome {
    bool delivered;
    uint64_t counted;
  };
  Outcome try_from_b(const std::string& mode, const std::vector<uint8_t>& inner,
                     const std::string& ns, const std::string& ip, uint16_t port,
                     const std::string& marker, const std::string& counter) {
    start_a({"--peer-check=" + mode});
    const auto before = daemon_stats(*d1_);
    const auto got = udp_receive_during(ns, ip, port, [&] { send_from_b(inner); });
    const auto after = daemon_stats(*d1_);
    return {ends_with(got, marker), after.at(counter) - before.at(counter)};
  }

  std::unique_ptr<Topology> topo_;
  std::unique_ptr<Process> d1_, d2_;
};

TEST_F(PeerPolicy, PeerCannotReachTheNodesOwnAddress) {
  const auto pkt = inner_udp("10.50.2.2", kNodeA, 7001, "to-node-a");
  const auto strict = try_from_b("strict", pkt, topo_->n1.name(), kNodeA, 7001, "to-node-a",
                                 "drop_inner_dst_not_local");
  EXPECT_FALSE(strict.delivered);
  EXPECT_EQ(strict.counted, 1u);
  const auto peer = try_from_b("peer", pkt, topo_->n1.name(), kNodeA, 7001, "to-node-a",
                               "drop_inner_dst_not_local");
  EXPECT_FALSE(peer.delivered);
  EXPECT_EQ(peer.counted, 1u);
  const auto off = try_from_b("off", pkt, topo_->n1.name(), kNodeA, 7001, "to-node-a",
                              "drop_inner_dst_not_local");
  EXPECT_TRUE(off.delivered) << "the datagram itself must be deliverable";
  EXPECT_EQ(off.counted, 0u);
}

// Node 1 would re-encapsulate it to C, and C would accept it: its outer
// source is node 1, a peer of C's.
TEST_F(PeerPolicy, PeerCannotRelayToAnotherPeersSubnet) {
  const auto pkt = inner_udp("10.50.2.2", "10.50.3.5", 7002, "to-peer-c");
  // What C receives is the datagram node 1 relays, on C's flannel port.
  const auto strict = try_from_b("strict", pkt, topo_->n2.name(), kPeerC, kPort, "to-peer-c",
                                 "drop_inner_dst_not_local");
  EXPECT_FALSE(strict.delivered);
  EXPECT_EQ(strict.counted, 1u);
  const auto off = try_from_b("off", pkt, topo_->n2.name(), kPeerC, kPort, "to-peer-c",
                              "drop_inner_dst_not_local");
  EXPECT_TRUE(off.delivered) << "node 1 relays it to C without the check";
}

TEST_F(PeerPolicy, PeerCannotUseTheNodeAsARouterToOutside) {
  // "Outside": 198.51.100.7 on node 2's loopback, routed from node 1.
  sh_ok("ip -n " + topo_->n2.name() + " addr add 198.51.100.7/32 dev lo");
  sh_ok("ip -n " + topo_->n1.name() + " route add 198.51.100.0/24 via " + kPeerB);
  const auto pkt = inner_udp("10.50.2.2", "198.51.100.7", 7003, "to-outside");
  const auto strict = try_from_b("strict", pkt, topo_->n2.name(), "198.51.100.7", 7003,
                                 "to-outside", "drop_inner_dst_not_local");
  EXPECT_FALSE(strict.delivered);
  EXPECT_EQ(strict.counted, 1u);
  const auto off = try_from_b("off", pkt, topo_->n2.name(), "198.51.100.7", 7003, "to-outside",
                              "drop_inner_dst_not_local");
  EXPECT_TRUE(off.delivered) << "node 1 forwards it without the check";
}

// The peer's own pods pass every mode, and a pod's normal traffic keeps
// flowing while forged packets are refused.
TEST_F(PeerPolicy, PeerForgingAnInnerSourceIsRefusedOnlyByStrict) {
  const auto pkt = inner_udp("10.50.3.5", "10.50.1.2", 7005, "forged-src");
  const auto strict = try_from_b("strict", pkt, topo_->p1.name(), "10.50.1.2", 7005, "forged-src",
                                 "drop_inner_src_not_peer");
  EXPECT_FALSE(strict.delivered);
  EXPECT_EQ(strict.counted, 1u);
  const auto peer = try_from_b("peer", pkt, topo_->p1.name(), "10.50.1.2", 7005, "forged-src",
                               "drop_inner_src_not_peer");
  EXPECT_TRUE(peer.delivered) << "--peer-check=peer does not check the inner source";
  EXPECT_EQ(peer.counted, 0u);
  const auto own = inner_udp("10.50.2.2", "10.50.1.2", 7006, "b-own-pod");
  const auto honest = try_from_b("strict", own, topo_->p1.name(), "10.50.1.2", 7006, "b-own-pod",
                                 "drop_inner_src_not_peer");
  EXPECT_TRUE(honest.delivered) << "a peer's own pod source must pass strict";
  EXPECT_EQ(honest.counted, 0u);
}

// The cluster-wide hole: with --ip-masq (kube-flannel's default) a pod's
// datagram to another node's port 8285 leaves its node masqueraded as that
// node, a known peer. Only the inner source gives it away.
TEST_F(PeerPolicy, PodBehindIpMasqCannotInjectSpoofedPackets) {
  d2_ = start_udpringd(*topo_, 2, {"--workers=1", "--ip-masq"});
  for (const std::string mode : {"strict", "off"}) {
    start_a({"--ip-masq", "--peer-check=" + mode});
    ASSERT_TRUE(ping(topo_->p2, "10.50.1.2")) << "normal pod traffic under " << mode;
    const auto before = daemon_stats(*d1_);
    const auto pkt = inner_udp("10.50.9.9", "10.50.1.2", 7004, "pod-spoof");
    const auto got = udp_receive_during(topo_->p1.name(), "10.50.1.2", 7004, [&] {
      // From the pod's own address, to node 1's public address: routed by
      // node 2 to the underlay and masqueraded there.
      udp_send_raw(topo_->p2.name(), "10.50.2.2", kNodeA, kPort, {pkt});
    });
    const auto after = daemon_stats(*d1_);
    if (mode == "strict") {
      EXPECT_FALSE(ends_with(got, "pod-spoof"));
      EXPECT_EQ(after.at("drop_inner_src_not_peer") - before.at("drop_inner_src_not_peer"), 1u)
          << "counted as a forged source: it came from peer node 2's (masqueraded) address";
      EXPECT_EQ(after.at("drop_unknown_peer"), before.at("drop_unknown_peer"));
    } else {
      EXPECT_TRUE(ends_with(got, "pod-spoof")) << "the injection works without the check";
    }
  }
}

// Refusals are in /metrics by reason.
TEST_F(PeerPolicy, RefusalsAreInMetricsByReason) {
  start_a({"--healthz-ip=127.0.0.1", "--healthz-port=9111"});
  send_from_b(inner_udp("10.50.2.2", kNodeA, 7007, "x"));
  send_from_b(inner_udp("10.50.3.5", "10.50.1.2", 7007, "y"));
  // C sends B's pod source.
  udp_send_raw(topo_->n2.name(), kPeerC, kNodeA, kPort,
               {inner_udp("10.50.2.2", "10.50.1.2", 7007, "z")});
  std::string m;
  for (int i = 0; i < 50; ++i) {
    m = http_get(topo_->n1.name(), 9111, "/metrics");
    if (metric(m, "udpring_drops_total{reason=\"inner_src_not_peer\"}") == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(metric(m, "udpring_drops_total{reason=\"inner_dst_not_local\"}"), 1) << m;
  EXPECT_EQ(metric(m, "udpring_drops_total{reason=\"inner_src_not_peer\"}"), 2) << m;
  EXPECT_EQ(metric(m, "udpring_drops_total{reason=\"unknown_peer\"}"), 0) << m;
}

}  // namespace
}  // namespace udpring::test
