#pragma once
// The two-node tests' common part: the topology of netns.h with udpringd on
// both nodes, started with one of a list of flag sets (a parameterized
// fixture), and a pod-to-pod ping.

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "tests/support/netns.h"

namespace udpring::test {

/// flannel's udp backend port, on which the topology's daemons listen.
inline constexpr uint16_t kPort = 8285;

/// `count` pings from `from` to `to` (0.2 s apart, 2 s timeout); true if answered.
bool ping(const Netns& from, const std::string& to, int count = 3);

/// A daemon configuration under test: a name for the test and udpringd flags.
struct FlagSet {
  const char* name;
  std::vector<std::string> flags;
};

/// What ctest lists after each parameterized test: its flags, not 32 bytes of hex.
void PrintTo(const FlagSet& f, std::ostream* os);

/// A Topology with udpringd on n1 (d1_) and n2 (d2_), both with the
/// parameter's flags. TearDown prints both logs if the test failed and
/// checks that SIGTERM stops each daemon cleanly.
class TwoNodes : public testing::TestWithParam<FlagSet> {
 protected:
  void SetUp() override;
  void TearDown() override;
  std::unique_ptr<Topology> topo_;
  std::unique_ptr<Process> d1_, d2_;
};

}  // namespace udpring::test
