#pragma once
// Opening queues of the TUN device that carries the overlay.

#include <string>
#include <vector>

#include "core/unique_fd.h"

namespace udpring::io {

/// Opens one queue of the multi-queue TUN `name` (IFF_TUN|IFF_NO_PI|
/// IFF_MULTI_QUEUE): the first call creates the device, later calls with the
/// same name attach further queues, one per worker, and so does the first
/// call when a persistent device of that name is left from an earlier run
/// (see set_tun_persist). The fd is left blocking:
/// since Linux 6.4 io_uring reads TUN without io-wq either way, and before
/// that O_NONBLOCK would turn into -EAGAIN completions. A new device is not
/// persistent, so it disappears with the last queue, as flannel's does.
/// With `vnet_hdr` every read and write carries a struct virtio_net_hdr.
/// Throws std::system_error with a hint for the usual container mistakes.
core::UniqueFd open_tun_queue(const std::string& name, bool vnet_hdr = false);

/// Turns on checksum and TCPv4 segmentation offload (TUNSETOFFLOAD
/// TUN_F_CSUM|TUN_F_TSO4) on a TUN opened with IFF_VNET_HDR, plus UDP
/// segmentation offload (TUN_F_USO4|USO6, Linux 6.2) when the kernel has
/// it: reads may then carry 64 KiB TCP or UDP super-packets and partial
/// checksums, and writes may carry GSO packets.
struct TunOffload {
  bool ok = false;    // CSUM + TSO4 accepted
  bool uso = false;   // USO accepted as well
  std::string error;  // why, when !ok
};
TunOffload enable_tun_offload(int fd, bool want_uso);

/// Takes every offload back (TUNSETOFFLOAD 0), for queues opened without the
/// vnet header on a device an earlier run gave offloads: the kernel would
/// otherwise still hand over super-packets. Returns 0 or an errno value.
int disable_tun_offload(int fd);

/// TUNSETPERSIST on the device `fd` is a queue of: when on, the device, its
/// address and its routes outlive the last queue (the kernel drops what it
/// routes there meanwhile, carrier off); off, it goes with the last queue.
/// Returns 0 or an errno value.
int set_tun_persist(int fd, bool on);

/// Detaches whatever steering program the device has (TUNSETSTEERINGEBPF
/// with -1): one an earlier run attached stays with a persistent device.
/// Returns 0 or an errno value.
int detach_tun_steering(int fd);

/// Per-device sysctls for the TUN, best effort (a read-only /proc/sys in a
/// container only loses the improvement; each failure is returned as text):
/// - accept_local=1: ICMP errors we write back carry the TUN's own address as
///   source, which the kernel otherwise drops as a martian, so the sender
///   never saw flannel's Net Unreachable;
/// - disable_ipv6=1: the overlay is IPv4-only; without it the kernel sends
///   router solicitations and MLD reports into the TUN for us to drop.
std::vector<std::string> tune_tun_sysctls(const std::string& name);

}  // namespace udpring::io
