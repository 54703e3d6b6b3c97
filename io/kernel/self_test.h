#pragma once
// Start-up self-tests of the kernel offloads the data plane relies on, so a
// kernel that mangles them (tailscale saw UDP GSO and TUN GSO bugs in 6.6.44
// and 7.0-rc) costs a logged fallback, not corrupted traffic.

#include <cstdint>
#include <string>

namespace udpring::io {

enum class SelfTestResult { kPassed, kFailed, kSkipped };

struct SelfTest {
  SelfTestResult result;
  std::string detail;  // what was seen, for the log
};

/// Sends two 100-byte segments as one UDP GSO sendmsg between two sockets on
/// 127.0.0.1 and checks that exactly two datagrams with the right bytes
/// arrive. kSkipped when loopback is unusable in this namespace (nothing can
/// be concluded then). Takes at most ~200 ms.
SelfTest self_test_udp_gso();

/// Writes one 2-segment GSO packet (a full segment and a shorter tail, the
/// shape Linux 6.6.44 wrongly refused with EINVAL) into a TUN opened with
/// IFF_VNET_HDR and offloads, as TCPv4 or (with `udp`) UDP_L4, and checks
/// the kernel takes it whole. The packet's source is 127.0.0.1, so the
/// kernel drops it as a martian after accepting it: no traffic results.
SelfTest self_test_tun_gso_write(int tun_fd, uint32_t tun_addr_be, bool udp);

}  // namespace udpring::io
