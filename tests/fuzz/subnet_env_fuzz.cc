// subnet.env as a previous run (or another program) left it, read back by
// core::parse_subnet_env at start-up for the previous lease. What parses
// must come back the same from the file this daemon writes
// (format_subnet_env) for any lease a net-conf allows (up to /30).

#include <cstdint>
#include <string_view>

#include "core/subnet_env.h"
#include "tests/fuzz/fuzz_check.h"

using namespace udpring;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const core::PreviousLease prev =
      core::parse_subnet_env(std::string_view(reinterpret_cast<const char*>(data), size));
  for (const auto& p : {prev.network, prev.subnet}) {
    if (p) FUZZ_CHECK((p->network.host() & ~core::Ipv4Prefix::host_mask(p->length)) == 0);
  }
  if (!prev.network || !prev.subnet || prev.subnet->length > 30) return 0;
  const core::SubnetEnv env{*prev.network, *prev.subnet, 1472, size % 2 == 0};
  const core::PreviousLease again = core::parse_subnet_env(core::format_subnet_env(env));
  FUZZ_CHECK(again.network == prev.network && again.subnet == prev.subnet);
  return 0;
}
