#pragma once
// The route table the data-plane fuzz targets run against: this node holds
// 10.5.1.0/24 (not in its own table, as core/peer_routes.cc builds it) and
// knows four peers, one with two subnets, with prefixes that end in each
// level of the 16-8-8 trie. Addresses a target picks a source from are
// listed too, so that both sides of the peer check are reached. One peer
// has a path limit (NextHop::max_inner, 600 bytes), so that packets both
// over and under it reach encapsulation.

#include <arpa/inet.h>

#include <array>
#include <memory>

#include "core/ipv4_addr.h"
#include "core/route_table.h"

namespace udpring::fuzz {

inline const core::Ipv4Prefix kOwnLease = *core::parse_prefix("10.5.1.0/24");

inline const core::RouteSnapshot& routes() {
  static const std::unique_ptr<const core::RouteSnapshot> snapshot = [] {
    const auto hop = [](const char* ip, uint16_t max_inner = 0) {
      return core::NextHop{*core::parse_ipv4(ip), htons(8285), max_inner};
    };
    const core::Route table[] = {
        {*core::parse_prefix("10.5.2.0/24"), hop("192.168.1.2")},
        {*core::parse_prefix("10.5.3.0/24"), hop("192.168.1.3", 600)},
        {*core::parse_prefix("10.5.4.0/24"), hop("192.168.1.3", 600)},  // a peer's second lease
        {*core::parse_prefix("10.5.128.0/17"), hop("192.168.1.4")},  // ends in level 1
        {*core::parse_prefix("10.5.200.7/32"), hop("192.168.1.5")},  // ends in level 3
    };
    return core::RouteSnapshot::build(table);
  }();
  return *snapshot;
}

/// Outer sources a datagram may come from: each peer, a stranger, 0.0.0.0.
inline const std::array<core::Be32, 6> kSources = {
    *core::parse_ipv4("192.168.1.2"), *core::parse_ipv4("192.168.1.3"),
    *core::parse_ipv4("192.168.1.4"), *core::parse_ipv4("192.168.1.5"),
    *core::parse_ipv4("203.0.113.9"), core::Be32{},
};

}  // namespace udpring::fuzz
