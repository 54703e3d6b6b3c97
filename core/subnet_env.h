#pragma once
// flannel's subnet.env: what the CNI plugin (and docker's mk-docker-opts)
// read to size the node's bridge. Format and key order are flannel's:
//   FLANNEL_NETWORK=10.5.0.0/16
//   FLANNEL_SUBNET=10.5.34.1/24      (lease base + 1)
//   FLANNEL_MTU=1472
//   FLANNEL_IPMASQ=false
// no quotes, LF line ends, nothing else.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/ipv4_addr.h"

namespace udpring::core {

struct SubnetEnv {
  Ipv4Prefix network;
  Ipv4Prefix subnet;  // the lease (base address, host bits clear)
  uint32_t mtu = 0;
  bool ip_masq = false;
};

/// The file's exact bytes.
std::string format_subnet_env(const SubnetEnv& env);

/// What a previous run left: FLANNEL_NETWORK and FLANNEL_SUBNET (host bits
/// masked, as flanneld reads them; the first of a comma-separated list).
/// Missing or unparseable keys come back empty; other keys are ignored.
struct PreviousLease {
  std::optional<Ipv4Prefix> network;
  std::optional<Ipv4Prefix> subnet;
};
PreviousLease parse_subnet_env(std::string_view text);

}  // namespace udpring::core
