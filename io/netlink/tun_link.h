#pragma once
// What a TUN device left by an earlier udpringd looks like, so that the
// next one can tell whether to reattach its queues or make it anew.
// Control thread only.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ipv4_addr.h"

namespace udpring::io {

struct LinkState {
  std::string kind;                          // IFLA_INFO_KIND: "tun" for a TUN or TAP
  bool tun = false;                          // a TUN (not a TAP)
  bool multi_queue = false;                  // IFF_MULTI_QUEUE
  bool persistent = false;                   // IFF_PERSIST: outlives its last queue
  uint32_t queues = 0;                       // queues attached now (open fds)
  uint32_t mtu = 0;
  std::vector<core::Ipv4Prefix> addresses;   // its IPv4 addresses, as address/length
  std::vector<core::Ipv4Prefix> routes;      // main-table IPv4 routes out of it
};

/// The link `name` as the kernel describes it, or nullopt when there is no
/// such link. Throws std::runtime_error when netlink cannot be asked.
std::optional<LinkState> read_link_state(const std::string& name);

/// Deletes the link `name` (with its addresses and routes). Throws
/// std::runtime_error naming the link.
void delete_link(const std::string& name);

}  // namespace udpring::io
