#include "encap/udp_encap.h"

#include <gtest/gtest.h>

#include "core/qsbr.h"
#include "encap/udp_decap.h"
#include "tests/support/packet_builder.h"

namespace udpring {
namespace {

using encap::DecapVerdict;
using encap::EncapVerdict;
using test::PacketBuilder;

std::unique_ptr<const core::RouteSnapshot> two_peers() {
  const core::Route routes[] = {
      {*core::parse_prefix("10.5.2.0/24"), {*core::parse_ipv4("192.168.1.20"), htons(8285)}},
      {*core::parse_prefix("10.5.3.0/24"), {*core::parse_ipv4("192.168.1.30"), htons(8285)}},
  };
  return core::RouteSnapshot::build(routes);
}

// A peer whose path carries 1,200-byte inner packets: DF packets over that
// are refused untouched (the worker answers them), packets without DF and
// packets that fit go, and an expiring TTL is still a TTL drop first.
TEST(Encap, DfPacketsOverThePathLimitAreTooBigTheRestGo) {
  core::Route routes[] = {
      {*core::parse_prefix("10.5.2.0/24"), {*core::parse_ipv4("192.168.1.20"), htons(8285)}},
  };
  routes[0].hop.max_inner = 1200;
  auto snap = core::RouteSnapshot::build(routes);
  std::vector<std::vector<uint8_t>> pkts = {
      PacketBuilder().dst("10.5.2.7").payload_bytes(1200 - 20).build(),            // fits exactly
      PacketBuilder().dst("10.5.2.7").payload_bytes(1201 - 20).build(),            // DF, one over
      PacketBuilder().dst("10.5.2.7").payload_bytes(1400).frag(0).build(),         // no DF: goes
      PacketBuilder().dst("10.5.2.7").payload_bytes(1400).ttl(1).build(),          // TTL first
  };
  const auto originals = pkts;
  std::vector<encap::PacketRef> refs;
  for (auto& p : pkts) refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  std::vector<encap::EncapResult> out(refs.size());
  EXPECT_EQ(encap::encapsulate_batch(refs, *snap, out), 2u);
  EXPECT_EQ(out[0].verdict, EncapVerdict::kSend);
  EXPECT_EQ(out[1].verdict, EncapVerdict::kDropTooBig);
  ASSERT_NE(out[1].hop, nullptr);
  EXPECT_EQ(out[1].hop->max_inner, 1200);
  EXPECT_EQ(pkts[1], originals[1]) << "a refused packet is quoted as it came";
  EXPECT_EQ(out[2].verdict, EncapVerdict::kSend);
  EXPECT_EQ(out[3].verdict, EncapVerdict::kDropTtl);
  // No limit known (0): nothing is too big.
  EXPECT_FALSE(encap::too_big_for(core::NextHop{}, 65535, true));
}

TEST(Encap, ClassifiesABatchAndPatchesOnlyTheSent) {
  auto routes = two_peers();
  std::vector<std::vector<uint8_t>> pkts = {
      PacketBuilder().dst("10.5.2.7").ttl(64).build(),   // send to .20
      PacketBuilder().dst("10.5.3.9").ttl(2).build(),    // send to .30, TTL 1 after
      PacketBuilder().dst("10.5.9.1").ttl(64).build(),   // no route
      PacketBuilder().dst("10.5.2.7").ttl(1).build(),    // TTL expires
      {0x60, 0, 0, 0},                                   // garbage (too short)
  };
  pkts.push_back(PacketBuilder().dst("10.5.2.7").build());
  pkts.back()[0] = 0x65;  // IPv6 version nibble
  const auto originals = pkts;
  std::vector<encap::PacketRef> refs;
  for (auto& p : pkts) refs.push_back({p.data(), static_cast<uint32_t>(p.size())});
  std::vector<encap::EncapResult> out(refs.size());

  EXPECT_EQ(encap::encapsulate_batch(refs, *routes, out), 2u);
  EXPECT_EQ(out[0].verdict, EncapVerdict::kSend);
  EXPECT_EQ(core::format_ipv4(out[0].hop->addr), "192.168.1.20");
  EXPECT_EQ(out[0].hop->port_be, htons(8285));
  EXPECT_EQ(out[1].verdict, EncapVerdict::kSend);
  EXPECT_EQ(core::format_ipv4(out[1].hop->addr), "192.168.1.30");
  EXPECT_EQ(out[2].verdict, EncapVerdict::kDropNoRoute);
  EXPECT_EQ(out[3].verdict, EncapVerdict::kDropTtl);
  EXPECT_EQ(out[4].verdict, EncapVerdict::kDropBadHeader);
  EXPECT_EQ(out[5].verdict, EncapVerdict::kDropBadHeader);

  // Sent packets: TTL one lower, header checksum still valid, all else equal.
  for (int i : {0, 1}) {
    EXPECT_EQ(pkts[i][8], originals[i][8] - 1);
    EXPECT_TRUE(test::header_checksum_ok(pkts[i]));
    for (size_t b = 0; b < pkts[i].size(); ++b) {
      if (b != 8 && b != 10 && b != 11) {
        ASSERT_EQ(pkts[i][b], originals[i][b]) << b;
      }
    }
  }
  // Dropped packets are untouched.
  for (int i : {2, 3, 4, 5}) EXPECT_EQ(pkts[i], originals[i]) << i;
}

// This node holds 10.5.1.0/24; the peers of two_peers() hold 10.5.2.0/24
// (192.168.1.20) and 10.5.3.0/24 (192.168.1.30).
const encap::DecapPolicy kStrict{encap::PeerCheck::kStrict, *core::parse_prefix("10.5.1.0/24")};

std::vector<encap::DecapInput> inputs(std::vector<std::vector<uint8_t>>& pkts,
                                      const std::vector<core::Be32>& srcs) {
  std::vector<encap::DecapInput> in;
  for (size_t i = 0; i < pkts.size(); ++i) {
    in.push_back({{pkts[i].data(), static_cast<uint32_t>(pkts[i].size())}, srcs[i]});
  }
  return in;
}

TEST(Decap, ValidatesPeersAndTtl) {
  auto routes = two_peers();
  const auto peer = *core::parse_ipv4("192.168.1.20");
  const auto stranger = *core::parse_ipv4("192.168.1.99");
  std::vector<std::vector<uint8_t>> pkts = {
      PacketBuilder().src("10.5.2.9").dst("10.5.1.2").ttl(61).build(),
      PacketBuilder().src("10.5.2.9").dst("10.5.1.2").ttl(61).build(),  // from a stranger
      PacketBuilder().src("10.5.2.9").dst("10.5.1.2").ttl(1).build(),
      std::vector<uint8_t>(19, 0x45),
      PacketBuilder().src("10.5.2.9").dst("10.5.1.2").build(),
  };
  pkts[4].push_back(0);  // one byte more than the total length says
  auto in = inputs(pkts, {peer, stranger, peer, peer, peer});
  std::vector<DecapVerdict> out(in.size());
  EXPECT_EQ(encap::decapsulate_batch(in, *routes, kStrict, out), 1u);
  EXPECT_EQ(out[0], DecapVerdict::kWrite);
  EXPECT_EQ(pkts[0][8], 60);
  EXPECT_TRUE(test::header_checksum_ok(pkts[0]));
  EXPECT_EQ(out[1], DecapVerdict::kDropUnknownPeer);
  EXPECT_EQ(out[2], DecapVerdict::kDropTtl);
  EXPECT_EQ(out[3], DecapVerdict::kDropBadHeader);
  EXPECT_EQ(out[4], DecapVerdict::kDropBadHeader);

  // Without the peer check, the stranger's packet passes.
  std::vector<DecapVerdict> open(in.size());
  encap::decapsulate_batch(std::span(in).subspan(1, 1), *routes, {encap::PeerCheck::kOff, {}}, open);
  EXPECT_EQ(open[0], DecapVerdict::kWrite);
}

// What a peer (or a pod behind its masquerade) may and may not make us do.
TEST(Decap, PolicyRefusesRelaysAndForgedSources) {
  auto routes = two_peers();
  const auto b = *core::parse_ipv4("192.168.1.20");
  struct Case {
    const char* what;
    const char* src;
    const char* dst;
    DecapVerdict strict, peer, off;
  };
  const Case cases[] = {
      {"a peer's pod to our pod", "10.5.2.9", "10.5.1.2", DecapVerdict::kWrite,
       DecapVerdict::kWrite, DecapVerdict::kWrite},
      {"a peer's host (its flannel0) to our flannel0", "10.5.2.0", "10.5.1.0",
       DecapVerdict::kWrite, DecapVerdict::kWrite, DecapVerdict::kWrite},
      {"to our lease's last address", "10.5.2.9", "10.5.1.255", DecapVerdict::kWrite,
       DecapVerdict::kWrite, DecapVerdict::kWrite},
      {"to our underlay address", "10.5.2.9", "192.168.1.10", DecapVerdict::kDropInnerDstNotLocal,
       DecapVerdict::kDropInnerDstNotLocal, DecapVerdict::kWrite},
      {"relayed to another peer's pod", "10.5.2.9", "10.5.3.4",
       DecapVerdict::kDropInnerDstNotLocal, DecapVerdict::kDropInnerDstNotLocal,
       DecapVerdict::kWrite},
      {"relayed to the Internet", "10.5.2.9", "198.51.100.7", DecapVerdict::kDropInnerDstNotLocal,
       DecapVerdict::kDropInnerDstNotLocal, DecapVerdict::kWrite},
      {"just outside our lease", "10.5.2.9", "10.5.0.255", DecapVerdict::kDropInnerDstNotLocal,
       DecapVerdict::kDropInnerDstNotLocal, DecapVerdict::kWrite},
      {"forged: another peer's pod", "10.5.3.4", "10.5.1.2", DecapVerdict::kDropInnerSrcNotPeer,
       DecapVerdict::kWrite, DecapVerdict::kWrite},
      {"forged: one of our own pods", "10.5.1.3", "10.5.1.2", DecapVerdict::kDropInnerSrcNotPeer,
       DecapVerdict::kWrite, DecapVerdict::kWrite},
      {"forged: an address no lease holds", "8.8.8.8", "10.5.1.2",
       DecapVerdict::kDropInnerSrcNotPeer, DecapVerdict::kWrite, DecapVerdict::kWrite},
  };
  for (const Case& c : cases) {
    for (const auto& [mode, want] : {std::pair{encap::PeerCheck::kStrict, c.strict},
                                     std::pair{encap::PeerCheck::kPeer, c.peer},
                                     std::pair{encap::PeerCheck::kOff, c.off}}) {
      std::vector<std::vector<uint8_t>> pkts = {PacketBuilder().src(c.src).dst(c.dst).build()};
      auto in = inputs(pkts, {b});
      std::vector<DecapVerdict> out(1);
      encap::decapsulate_batch(in, *routes, {mode, kStrict.local}, out);
      EXPECT_EQ(out[0], want) << c.what << " under --peer-check="
                              << encap::peer_check_name(mode);
    }
  }
}

// A mixed batch gets one verdict per datagram, in order.
TEST(Decap, MixedBatchKeepsEachVerdict) {
  auto routes = two_peers();
  const auto b = *core::parse_ipv4("192.168.1.20"), c = *core::parse_ipv4("192.168.1.30");
  std::vector<std::vector<uint8_t>> pkts = {
      PacketBuilder().src("10.5.2.9").dst("10.5.1.2").build(),
      PacketBuilder().src("10.5.2.9").dst("10.5.1.2").build(),  // C sends B's source
      PacketBuilder().src("10.5.3.9").dst("10.5.1.2").build(),
      PacketBuilder().src("10.5.3.9").dst("10.5.2.2").build(),  // C asks us to relay to B
  };
  auto in = inputs(pkts, {b, c, c, c});
  std::vector<DecapVerdict> out(in.size());
  EXPECT_EQ(encap::decapsulate_batch(in, *routes, kStrict, out), 2u);
  EXPECT_EQ(out, (std::vector<DecapVerdict>{DecapVerdict::kWrite, DecapVerdict::kDropInnerSrcNotPeer,
                                            DecapVerdict::kWrite,
                                            DecapVerdict::kDropInnerDstNotLocal}));
  EXPECT_EQ(pkts[1][8], 64) << "a refused packet is not touched";
}

TEST(Decap, PeerCheckNames) {
  for (auto mode : {encap::PeerCheck::kOff, encap::PeerCheck::kPeer, encap::PeerCheck::kStrict}) {
    EXPECT_EQ(encap::parse_peer_check(encap::peer_check_name(mode)), mode);
  }
  EXPECT_FALSE(encap::parse_peer_check("Strict"));
  EXPECT_FALSE(encap::parse_peer_check(""));
}

}  // namespace
}  // namespace udpring
