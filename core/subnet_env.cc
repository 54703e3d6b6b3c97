#include "core/subnet_env.h"

namespace udpring::core {

std::string format_subnet_env(const SubnetEnv& env) {
  const Be32 first_host = Be32::from_host(env.subnet.network.host() + 1);
  std::string out;
  out.append("FLANNEL_NETWORK=").append(format_prefix(env.network)).append("\n");
  out.append("FLANNEL_SUBNET=")
      .append(format_ipv4(first_host))
      .append("/")
      .append(std::to_string(env.subnet.length))
      .append("\n");
  out.append("FLANNEL_MTU=").append(std::to_string(env.mtu)).append("\n");
  out.append("FLANNEL_IPMASQ=").append(env.ip_masq ? "true" : "false").append("\n");
  return out;
}

PreviousLease parse_subnet_env(std::string_view text) {
  PreviousLease prev;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, eq);
    std::string_view value = line.substr(eq + 1);
    value = value.substr(0, value.find(','));  // a list: the first entry
    if (key == "FLANNEL_NETWORK") prev.network = parse_prefix(value);
    if (key == "FLANNEL_SUBNET") prev.subnet = parse_prefix(value);
  }
  return prev;
}

}  // namespace udpring::core
