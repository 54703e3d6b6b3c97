#include "core/net_config.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "core/json_fields.h"
#include "core/json_limits.h"

namespace udpring::core {
namespace {

using Json = nlohmann::json;

using json_fields::find_ci;

std::string quoted(const Json& v) { return v.dump(); }

std::string get_string(const Json& obj, std::string_view key, std::string_view field) {
  const Json* v = find_ci(obj, key);
  if (!v) return {};
  if (!v->is_string()) {
    throw ConfigError(std::string(field) + " must be a string, got " + quoted(*v));
  }
  return v->get<std::string>();
}

bool get_bool(const Json& obj, std::string_view key, bool def) {
  const Json* v = find_ci(obj, key);
  if (!v) return def;
  if (!v->is_boolean()) {
    throw ConfigError(std::string(key) + " must be true or false, got " + quoted(*v));
  }
  return v->get<bool>();
}

int64_t get_int(const Json& obj, std::string_view key, std::string_view field, int64_t def) {
  const Json* v = find_ci(obj, key);
  if (!v) return def;
  if (!v->is_number_integer() && !v->is_number_unsigned()) {
    throw ConfigError(std::string(field) + " must be an integer, got " + quoted(*v));
  }
  return v->get<int64_t>();
}

Be32 parse_subnet_bound(const Json& obj, std::string_view key, const NetConfig& cfg,
                        Be32 def) {
  const std::string text = get_string(obj, key, key);
  if (text.empty()) return def;
  const auto addr = parse_ipv4(text);
  if (!addr) throw ConfigError(std::string(key) + " \"" + text + "\" is not an IPv4 address");
  if (!cfg.network.contains(*addr)) {
    throw ConfigError(std::string(key) + " \"" + text + "\" is not in Network " +
                      format_prefix(cfg.network));
  }
  if ((addr->host() & ~Ipv4Prefix::host_mask(cfg.subnet_len)) != 0) {
    throw ConfigError(std::string(key) + " \"" + text + "\" is not on a /" +
                      std::to_string(cfg.subnet_len) + " (SubnetLen) boundary");
  }
  return *addr;
}

}  // namespace

NetConfig parse_net_config(std::string_view json_text) {
  // flannel's net-conf is a few hundred bytes, two levels deep.
  if (const auto why = json_limits_exceeded(json_text, kNetConfigLimits)) {
    throw ConfigError("net-conf " + *why + ": not a network config");
  }
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::exception& e) {  // a syntax error, or a number out of range (406)
    throw ConfigError(std::string("net-conf is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) throw ConfigError("net-conf must be a JSON object");

  NetConfig cfg;
  if (!get_bool(root, "EnableIPv4", true)) {
    throw ConfigError("EnableIPv4 false is not supported by udpring (the udp backend is IPv4-only)");
  }
  if (get_bool(root, "EnableIPv6", false)) {
    throw ConfigError("EnableIPv6 true is not supported by the udp backend");
  }

  const std::string network = get_string(root, "Network", "Network");
  if (network.empty()) throw ConfigError("Network is missing from net-conf");
  const auto prefix = parse_prefix(network);
  if (!prefix) throw ConfigError("Network \"" + network + "\" is not an IPv4 CIDR");
  cfg.network = *prefix;

  const int64_t subnet_len = get_int(root, "SubnetLen", "SubnetLen", 0);
  if (subnet_len == 0) {
    if (cfg.network.length > 28) {
      throw ConfigError("Network " + format_prefix(cfg.network) +
                        " is too small: the prefix must be /28 or shorter");
    }
    cfg.subnet_len = cfg.network.length <= 22 ? 24 : static_cast<uint8_t>(cfg.network.length + 2);
  } else {
    if (subnet_len < 0 || subnet_len > 30) {
      throw ConfigError("SubnetLen " + std::to_string(subnet_len) + " must be 30 or less");
    }
    if (subnet_len < cfg.network.length + 2) {
      throw ConfigError("SubnetLen " + std::to_string(subnet_len) +
                        " leaves room for fewer than four subnets in Network " +
                        format_prefix(cfg.network));
    }
    cfg.subnet_len = static_cast<uint8_t>(subnet_len);
  }

  const uint32_t subnet_size = uint32_t{1} << (32 - cfg.subnet_len);
  const uint32_t net_size_minus1 = ~Ipv4Prefix::host_mask(cfg.network.length);
  const uint32_t base = cfg.network.network.host();
  cfg.subnet_min = parse_subnet_bound(root, "SubnetMin", cfg, Be32::from_host(base + subnet_size));
  cfg.subnet_max = parse_subnet_bound(root, "SubnetMax", cfg,
                                      Be32::from_host(base + net_size_minus1 + 1 - subnet_size));
  if (cfg.subnet_min.host() > cfg.subnet_max.host()) {
    throw ConfigError("SubnetMin " + format_ipv4(cfg.subnet_min) + " is above SubnetMax " +
                      format_ipv4(cfg.subnet_max));
  }

  const Json* backend = find_ci(root, "Backend");
  if (!backend) {
    cfg.backend_type = "udp";  // flannel's parseBackendType defaults to udp
  } else {
    if (!backend->is_object()) throw ConfigError("Backend must be an object, got " + quoted(*backend));
    std::string type = get_string(*backend, "Type", "Backend.Type");
    if (type.empty()) throw ConfigError("Backend.Type is missing (unknown backend type)");
    std::transform(type.begin(), type.end(), type.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (type != "udp") {
      throw ConfigError("Backend.Type \"" + type + "\" is not supported by udpring (only \"udp\")");
    }
    cfg.backend_type = type;
    int64_t port = get_int(*backend, "Port", "Backend.Port", kDefaultUdpPort);
    if (port == 0) port = kDefaultUdpPort;  // flannel treats 0 as "unset"
    if (port < 1 || port > 65535) {
      throw ConfigError("Backend.Port " + std::to_string(port) + " is not a port number (1-65535)");
    }
    cfg.port = static_cast<uint16_t>(port);
  }
  return cfg;
}

}  // namespace udpring::core
