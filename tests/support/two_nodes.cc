#include "tests/support/two_nodes.h"

#include <cstdlib>
#include <iostream>

namespace udpring::test {

bool ping(const Netns& from, const std::string& to, int count) {
  return sh(from.exec() + "ping -c " + std::to_string(count) + " -i 0.2 -W 2 -q " + to +
            " >/dev/null 2>&1") == 0;
}

void PrintTo(const FlagSet& f, std::ostream* os) {
  for (const std::string& flag : f.flags) *os << (&flag == &f.flags.front() ? "" : " ") << flag;
}

void TwoNodes::SetUp() {
  UDPRING_REQUIRE_INTEGRATION();
  topo_ = std::make_unique<Topology>();
  d1_ = start_udpringd(*topo_, 1, GetParam().flags);
  d2_ = start_udpringd(*topo_, 2, GetParam().flags);
}

void TwoNodes::TearDown() {
  if (HasFailure() && d1_) {
    std::cerr << "--- n1 log ---\n" << d1_->log() << "--- n2 log ---\n" << d2_->log();
  }
  // Stop cleanly and check the exit code: SIGTERM must be a clean stop.
  for (auto* d : {d1_.get(), d2_.get()}) {
    if (d) {
      EXPECT_EQ(d->stop(), 0);
    }
  }
  d1_.reset();
  d2_.reset();
  topo_.reset();
}

}  // namespace udpring::test
