#pragma once
// The daemon's TUN: one queue per worker, the offloads the kernel grants,
// the steering program, the address, MTU and route, and the self-tests that
// decide whether coalesced writes may be used.

#include <cstdint>
#include <memory>
#include <string>
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
  bool reattached = false;             // the device was kept by an earlier run (--keep-tun)
  core::UniqueFd control;              // a dup of queue 0, for ioctls once workers own the queues
};

/// Creates opts.tun_name with `queues` queues (re-creating it without the
/// vnet header when the kernel refuses the offloads), attaches the steering
/// program, gives it `addr`/32, `mtu` and the route to `network`, and tests
/// GSO writes. Each refused fast path is logged and left off. A TUN of that
/// name left by an earlier run (--keep-tun) is reattached when its address,
/// MTU and routes are still these, else deleted and made anew; without
/// --keep-tun a kept device is made non-persistent again. Throws
/// std::runtime_error or std::system_error naming the call and the device
/// when the TUN cannot be made or configured, or another process holds it.
TunSetup set_up_tun(const Options& opts, unsigned queues, core::Be32 addr, uint32_t mtu,
                    const core::Ipv4Prefix& network);

/// The same for queues handed over by the udpringd this one replaces
/// (io/daemon/handover.h), with the offloads it was granted: the device is
/// live and stays so; it is made non-persistent until ready, as a kept one.
TunSetup adopt_tun(const Options& opts, std::vector<core::UniqueFd> queues, bool vnet, bool uso,
                   core::Be32 addr, uint32_t mtu, const core::Ipv4Prefix& network);

/// --keep-tun, once the node is ready: makes the device persistent, so that
/// it stays, with its address and route, when udpringd stops or dies, and
/// logs it. Before that a failed start-up takes a new device with it.
void keep_tun_on_exit(const TunSetup& t, const std::string& name);

}  // namespace udpring::io
