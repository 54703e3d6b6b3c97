#pragma once
// flannel's network configuration (net-conf.json, or the etcd `config` key)
// with flannel's defaults and validation rules applied.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/ipv4_addr.h"
#include "core/json_limits.h"

namespace udpring::core {

inline constexpr uint16_t kDefaultUdpPort = 8285;
/// What parse_net_config accepts at most; readers of net-conf files read no more.
inline constexpr JsonLimits kNetConfigLimits{64 * 1024, 32};

/// A configuration error; what() names the field and the offending value.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct NetConfig {
  Ipv4Prefix network;         // the whole overlay, host bits cleared
  uint8_t subnet_len = 0;     // prefix length of each node's lease
  Be32 subnet_min;            // first lease base that may be allocated
  Be32 subnet_max;            // last lease base that may be allocated
  std::string backend_type;   // always "udp" after a successful parse
  uint16_t port = kDefaultUdpPort;  // Backend.Port: bind and destination port
};

/// Parses and validates net-conf JSON exactly as flannel does: keys match
/// case-insensitively, unknown keys are ignored, an absent Backend means udp,
/// SubnetLen/SubnetMin/SubnetMax get flannel's defaults. Throws ConfigError,
/// also for text beyond kNetConfigLimits (checked before it is parsed).
NetConfig parse_net_config(std::string_view json_text);

}  // namespace udpring::core
