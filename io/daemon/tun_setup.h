#pragma once
// The daemon's TUN: one queue per worker, the offloads the kernel grants,
// the steering program, the address, MTU and route, and the self-tests that
// decide whether coalesced writes may be used.

#include <cstdint>
#include <memory>
#include <vector>

#include "core/ipv4_addr.h"
#include "core/unique_fd.h"
#include "io/daemon/options.h"
#include "io/kernel/tun_steering.h"

namespace udpring::io {

struct TunSetup {
  std::vector<core::UniqueFd> queues;  // one per worker; closing the last removes the device
  bool vnet = false;                   // IFF_VNET_HDR with checksum and TSO offload
  bool uso = false;                    // the TUN also accepted UDP segmentation offload
  bool coalesce = false;               // TCP runs may be written as one GSO packet
  bool coalesce_udp = false;           // UDP runs too
  std::unique_ptr<TunSteering> steering;  // with 2+ workers, unless off or refused
};

/// Creates opts.tun_name with `queues` queues (re-creating it without the
/// vnet header when the kernel refuses the offloads), attaches the steering
/// program, gives it `addr`/32, `mtu` and the route to `network`, and tests
/// GSO writes. Each refused fast path is logged and left off. Throws
/// std::system_error naming the call and the device when the TUN cannot be
/// made or configured.
TunSetup set_up_tun(const Options& opts, unsigned queues, core::Be32 addr, uint32_t mtu,
                    const core::Ipv4Prefix& network);

}  // namespace udpring::io
