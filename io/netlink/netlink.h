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
  core::Be32 addr;       // IfaceAddr: the UDP socket binds here
  core::Be32 public_ip;  // ExtAddr, advertised in the lease: --public-ip, else addr
  uint32_t mtu = 0;      // the TUN gets mtu - 28
};

/// flanneld's interface flags. Aggregate, in this order: io/daemon/daemon.cc
/// brace-initialises it.
struct IfaceSelection {
  std::vector<std::string> ifaces;       // --iface: name or IPv4, first match wins
  std::vector<std::string> iface_regex;  // --iface-regex: tried in order; each against every
                                         // IPv4 address first, then every interface name
  std::optional<core::Be32> can_reach;   // --iface-can-reach: the kernel's route to it
  std::optional<core::Be32> public_ip;   // --public-ip: advertised; alone, also picks its owner
};

/// flanneld's choice of interface and address:
///  - with any of --iface, --iface-regex, --iface-can-reach: the --iface
///    values in order, then (if none matched) the regexes in order, then (if
///    none matched) the route to --iface-can-reach. An --iface IPv4 address
///    selects the interface holding it and that very address; a name or a
///    regex-matched name, the interface's preferred address; a regex is
///    matched (anywhere, as Go's MatchString) against every interface's
///    addresses before any name. --iface-can-reach takes the route's output
///    device and source address (`ip route get`);
///  - else with --public-ip: the interface holding that address (a NAT'ed
///    public IP needs --iface);
///  - else the interface of the IPv4 default route.
/// "Preferred address": global before link-local (169.254/16), permanent
/// before dynamic, primary before secondary; loopback, multicast and
/// deprecated addresses never count.
/// Throws std::runtime_error naming the flags and values that found nothing,
/// or an invalid regex.
ExternalInterface find_external_interface(const IfaceSelection& sel);

/// The --iface values alone: find_external_interface({ifaces}).
ExternalInterface find_external_interface(const std::vector<std::string>& ifaces);

/// Every IPv4 address on this host's (namespace's) interfaces, in the
/// kernel's order. Throws std::runtime_error when they cannot be listed.
std::vector<core::Be32> local_ipv4_addresses();

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

/// Caps the segments of the super-packets the kernel hands the TUN
/// `name` (IFLA_GSO_MAX_SEGS): a bigger one it cuts itself first (software
/// GSO), so that no read holds more segments than a worker can send.
/// Returns the cap the kernel reports afterwards (a kernel before 5.19
/// ignores the attribute and keeps its own). Throws std::runtime_error
/// naming the link when netlink refuses.
uint32_t set_gso_max_segs(const std::string& name, uint32_t segs);

}  // namespace udpring::io
