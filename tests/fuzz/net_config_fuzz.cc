// net-conf.json, from the file or etcd's <prefix>/config key, through
// core::parse_net_config. Anything that is not a usable config must be a
// core::ConfigError (the daemon names the source and retries); a config
// that parses must be one the lease code can allocate from, and the same
// again when written back as JSON and parsed.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/net_config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace udpring;

std::string to_json(const core::NetConfig& c) {
  return "{\"Network\":\"" + core::format_prefix(c.network) + "\",\"SubnetLen\":" +
         std::to_string(c.subnet_len) + ",\"SubnetMin\":\"" + core::format_ipv4(c.subnet_min) +
         "\",\"SubnetMax\":\"" + core::format_ipv4(c.subnet_max) +
         "\",\"Backend\":{\"Type\":\"udp\",\"Port\":" + std::to_string(c.port) + "}}";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  core::NetConfig c;
  try {
    c = core::parse_net_config(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const core::ConfigError&) {
    return 0;
  }
  const uint32_t host_mask = ~core::Ipv4Prefix::host_mask(c.subnet_len);
  FUZZ_CHECK(c.network.length <= 28);
  FUZZ_CHECK((c.network.network.host() & ~core::Ipv4Prefix::host_mask(c.network.length)) == 0);
  FUZZ_CHECK(c.subnet_len >= c.network.length + 2 && c.subnet_len <= 30);
  FUZZ_CHECK(c.network.contains(c.subnet_min) && c.network.contains(c.subnet_max));
  FUZZ_CHECK((c.subnet_min.host() & host_mask) == 0 && (c.subnet_max.host() & host_mask) == 0);
  FUZZ_CHECK(c.subnet_min.host() <= c.subnet_max.host());
  FUZZ_CHECK(c.backend_type == "udp" && c.port != 0);

  const core::NetConfig again = core::parse_net_config(to_json(c));
  FUZZ_CHECK(again.network == c.network && again.subnet_len == c.subnet_len);
  FUZZ_CHECK(again.subnet_min == c.subnet_min && again.subnet_max == c.subnet_max);
  FUZZ_CHECK(again.port == c.port && again.backend_type == c.backend_type);
  return 0;
}
