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

TEST(Decap, ValidatesPeersAndTtl) {
  auto routes = two_peers();
  const auto peer = *core::parse_ipv4("192.168.1.20");
  const auto stranger = *core::parse_ipv4("192.168.1.99");
  std::vector<std::vector<uint8_t>> pkts = {
      PacketBuilder().dst("10.5.1.2").ttl(61).build(),
      PacketBuilder().dst("10.5.1.2").ttl(61).build(),  // from a stranger
      PacketBuilder().dst("10.5.1.2").ttl(1).build(),
      std::vector<uint8_t>(19, 0x45),
      PacketBuilder().dst("10.5.1.2").build(),
  };
  pkts[4].push_back(0);  // one byte more than the total length says
  std::vector<encap::DecapInput> in;
  const core::Be32 srcs[] = {peer, stranger, peer, peer, peer};
  for (size_t i = 0; i < pkts.size(); ++i) {
    in.push_back({{pkts[i].data(), static_cast<uint32_t>(pkts[i].size())}, srcs[i]});
  }
  std::vector<DecapVerdict> out(in.size());
  EXPECT_EQ(encap::decapsulate_batch(in, *routes, true, out), 1u);
  EXPECT_EQ(out[0], DecapVerdict::kWrite);
  EXPECT_EQ(pkts[0][8], 60);
  EXPECT_TRUE(test::header_checksum_ok(pkts[0]));
  EXPECT_EQ(out[1], DecapVerdict::kDropUnknownPeer);
  EXPECT_EQ(out[2], DecapVerdict::kDropTtl);
  EXPECT_EQ(out[3], DecapVerdict::kDropBadHeader);
  EXPECT_EQ(out[4], DecapVerdict::kDropBadHeader);

  // Without the peer check, the stranger's packet passes.
  std::vector<DecapVerdict> open(in.size());
  encap::decapsulate_batch(std::span(in).subspan(1, 1), *routes, false, open);
  EXPECT_EQ(open[0], DecapVerdict::kWrite);
}

}  // namespace
}  // namespace udpring
