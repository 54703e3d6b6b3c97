#include "encap/peer_icmp_error.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/ipv4_addr.h"
#include "tests/support/packet_builder.h"

namespace udpring::encap {
namespace {

using test::PacketBuilder;

// Our datagram from 192.168.77.1:33600 to the peer 192.168.77.2:8285, as
// the peer's kernel quotes it: IP header and 8 bytes of UDP header.
std::vector<uint8_t> quoted_datagram(uint8_t protocol = 17) {
  std::vector<uint8_t> udp = {0x83, 0x40, 0x20, 0x5d, 0x05, 0xc8, 0x00, 0x00};
  auto ip = PacketBuilder().src("192.168.77.1").dst("192.168.77.2").protocol(protocol)
                .payload(std::vector<uint8_t>(1472, 0))
                .build();
  ip.resize(20);
  ip.insert(ip.end(), udp.begin(), udp.end());
  return ip;
}

std::vector<uint8_t> icmp(uint8_t type, uint8_t code, const std::vector<uint8_t>& quoted,
                          uint16_t mtu = 0) {
  std::vector<uint8_t> body = {type, code, 0, 0, 0, 0, static_cast<uint8_t>(mtu >> 8),
                               static_cast<uint8_t>(mtu)};
  body.insert(body.end(), quoted.begin(), quoted.end());
  return PacketBuilder().src("192.168.77.2").dst("192.168.77.1").protocol(1).payload(body).build();
}

TEST(PeerIcmpError, PortUnreachableNamesThePeerAndBothPorts) {
  const auto e = parse_peer_icmp_error(icmp(3, 3, quoted_datagram()));
  ASSERT_TRUE(e);
  EXPECT_EQ(core::format_ipv4(e->peer), "192.168.77.2");
  EXPECT_EQ(core::format_ipv4(e->local), "192.168.77.1");
  EXPECT_EQ(core::format_ipv4(e->reporter), "192.168.77.2");
  EXPECT_EQ(e->peer_port, 8285);
  EXPECT_EQ(e->local_port, 33600);
  EXPECT_EQ(e->reason, PeerUnreach::kPort);
  EXPECT_EQ(peer_unreach_name(e->reason), "port_unreachable");
  EXPECT_EQ(e->next_hop_mtu, 0);
}

TEST(PeerIcmpError, CodesMapToReasonsAndFragmentationNeededCarriesTheMtu) {
  const std::pair<uint8_t, PeerUnreach> cases[] = {
      {0, PeerUnreach::kNet},         {1, PeerUnreach::kHost},        {2, PeerUnreach::kOther},
      {3, PeerUnreach::kPort},        {4, PeerUnreach::kFragmentationNeeded},
      {6, PeerUnreach::kNet},         {7, PeerUnreach::kHost},        {9, PeerUnreach::kProhibited},
      {10, PeerUnreach::kProhibited}, {13, PeerUnreach::kProhibited}, {15, PeerUnreach::kOther}};
  for (const auto& [code, reason] : cases) {
    const auto e = parse_peer_icmp_error(icmp(3, code, quoted_datagram(), 1400));
    ASSERT_TRUE(e) << int{code};
    EXPECT_EQ(e->reason, reason) << int{code};
    EXPECT_EQ(e->next_hop_mtu, code == 4 ? 1400 : 0) << int{code};
  }
}

TEST(PeerIcmpError, QuotedOptionsAreSkipped) {
  auto q = quoted_datagram();
  q[0] = 0x46;  // IHL 6: 4 bytes of options before the UDP header
  q.insert(q.begin() + 20, {1, 1, 1, 0});
  const auto e = parse_peer_icmp_error(icmp(3, 3, q));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->local_port, 33600);
  EXPECT_EQ(e->peer_port, 8285);
}

TEST(PeerIcmpError, AnythingElseOrCutShortIsNotOne) {
  EXPECT_FALSE(parse_peer_icmp_error(icmp(11, 0, quoted_datagram())));  // time exceeded
  EXPECT_FALSE(parse_peer_icmp_error(icmp(0, 0, quoted_datagram())));   // echo reply
  EXPECT_FALSE(parse_peer_icmp_error(icmp(3, 3, quoted_datagram(6))));  // about TCP
  const auto whole = icmp(3, 3, quoted_datagram());
  for (size_t n = 0; n < whole.size(); ++n) {
    EXPECT_FALSE(parse_peer_icmp_error(std::span(whole.data(), n))) << n;
  }
  auto not_ipv4 = whole;
  not_ipv4[0] = 0x65;
  EXPECT_FALSE(parse_peer_icmp_error(not_ipv4));
  auto quoted_ihl_short = whole;
  quoted_ihl_short[28] = 0x44;
  EXPECT_FALSE(parse_peer_icmp_error(quoted_ihl_short));
}

}  // namespace
}  // namespace udpring::encap
