#include "tests/support/bad_leases.h"

#include <chrono>
#include <thread>

#include "tests/support/metrics.h"
#include "tests/support/traffic.h"

namespace udpring::test {

std::string lease_name(const std::string& subnet) {
  std::string n = subnet;
  n[n.find('/')] = '-';
  return n;
}

std::vector<BadLease> bad_leases(const std::string& peer, const std::string& pod_ip,
                                 const std::string& self_ip, const std::string& elsewhere,
                                 const std::function<std::string(int)>& free_subnet) {
  return {
      {"0.0.0.0-0", elsewhere, "wrong_length"},
      {"10.60.0.0-16", elsewhere, "wrong_length"},
      {pod_ip + "-32", elsewhere, "wrong_length"},
      {"10.61.5.0-24", elsewhere, "outside_network"},
      {lease_name(free_subnet(0)), self_ip, "public_ip_ours"},
      {lease_name(free_subnet(1)), "127.0.0.1", "public_ip_not_unicast"},
      {lease_name(free_subnet(2)), "224.0.0.1", "public_ip_not_unicast"},
      {lease_name(free_subnet(3)), "169.254.1.1", "public_ip_not_unicast"},
      {lease_name(free_subnet(4)), "10.60.200.1", "public_ip_in_network"},
      {lease_name(peer) + "&fc00:0:0:1::-64", elsewhere, "overlap"},
  };
}

std::map<std::string, long long> refusals_by_reason(const std::vector<BadLease>& leases) {
  std::map<std::string, long long> n;
  for (const char* r : {"wrong_length", "outside_network", "public_ip_not_unicast",
                        "public_ip_ours", "public_ip_in_network", "overlap"}) {
    n[r] = 0;
  }
  for (const BadLease& l : leases) ++n[l.reason];
  return n;
}

std::string await_refusals(const std::string& ns, int port,
                           const std::map<std::string, long long>& want, long long routes,
                           int timeout_ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const std::string m = http_get(ns, static_cast<uint16_t>(port), "/metrics");
    std::string diff;
    for (const auto& [reason, n] : want) {
      for (const char* family : {"udpring_leases_refused_total", "udpring_leases_refused_current"}) {
        const std::string sample = std::string(family) + "{reason=\"" + reason + "\"}";
        const long long got = metric(m, sample);
        if (got != n) {
          diff += sample + " is " + std::to_string(got) + ", want " + std::to_string(n) + "\n";
        }
      }
    }
    if (const long long got = metric(m, "udpring_routes"); got != routes) {
      diff += "udpring_routes is " + std::to_string(got) + ", want " + std::to_string(routes) + "\n";
    }
    if (diff.empty()) return "";
    if (std::chrono::steady_clock::now() >= until) return diff + m;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace udpring::test
