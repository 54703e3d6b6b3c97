#pragma once
// Interface discovery and TUN configuration over rtnetlink (libnl-3), never by
// running `ip`. Control thread only.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ipv4_addr.h"

namespace udpring::io {

/// The interface that carries encapsulated traffic.
struct ExternalInterface {
  std::string name;
  int ifindex = 0;
  core::Be32 addr;    // IfaceAddr: the UDP socket binds here
  uint32_t mtu = 0;   // the TUN gets mtu - 28
};

/// Resolves flannel's --iface values in order (first match wins): an IPv4
/// address selects the interface holding it and that very address; a name
/// selects the interface and its first IPv4 address (primary before
/// secondary). With no values, the interface of the IPv4 default route.
/// Throws std::runtime_error naming what could not be found.
ExternalInterface find_external_interface(const std::vector<std::string>& ifaces);

/// flanneld's interface flags, in its order of precedence.
struct IfaceSelection {
  std::vector<std::string> ifaces;       // --iface: name or IPv4, first match wins
  std::vector<std::string> iface_regex;  // --iface-regex: tried in order; each against every
                                         // IPv4 address first, then every interface name
  std::optional<core::Be32> can_reach;   // --iface-can-reach: the kernel's route to it
  std::optional<core::Be32> public_ip;   // --public-ip: with no other flag, its owner
};

/// --iface if given, else --iface-regex, else --iface-can-reach, else the
/// interface that owns --public-ip, else the default-route interface.
/// Throws std::runtime_error naming the flag and the value that failed.
ExternalInterface find_external_interface(const IfaceSelection& sel);

struct TunConfig {
  std::string name;          // e.g. flannel0 (must already exist)
  core::Be32 addr;           // lease base address, configured as /32
  uint32_t mtu = 0;          // external MTU - 28
  uint32_t txqueuelen = 0;   // 0 keeps the kernel's default
  core::Ipv4Prefix network;  // routed through the TUN
};

/// Address /32, MTU, txqueuelen, link up, then the Network route through the
/// TUN (EEXIST tolerated: docker or a previous run may have added it).
/// Throws std::runtime_error naming the step and the object.
void configure_tun(const TunConfig& cfg);

}  // namespace udpring::io
