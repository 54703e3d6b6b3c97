#pragma once
// Start-up self-tests of the kernel offloads the data plane relies on, so a
// kernel that mangles them (tailscale saw UDP GSO and TUN GSO bugs in 6.6.44
// and 7.0-rc) costs a logged fallback, not corrupted traffic.

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

}  // namespace udpring::io
