#include "core/lease.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>
#include <nlohmann/json.hpp>

#include "core/json_fields.h"
#include "core/lease_policy.h"
#include "core/json_limits.h"

namespace udpring::core {
namespace {

using Json = nlohmann::json;

using json_fields::find_ci;

bool overlaps(const Ipv4Prefix& a, const Ipv4Prefix& b) {
  return a.contains(b) || b.contains(a);
}

}  // namespace

std::string subnets_prefix(std::string_view etcd_prefix) {
  std::string p(etcd_prefix);
  while (!p.empty() && p.back() == '/') p.pop_back();
  return p + "/subnets/";
}

std::string lease_key(std::string_view etcd_prefix, const Ipv4Prefix& subnet) {
  std::string key = subnets_prefix(etcd_prefix);
  key += format_ipv4(subnet.network);
  key += '-';
  key += std::to_string(subnet.length);
  return key;
}

std::optional<Ipv4Prefix> parse_lease_key(std::string_view key) {
  if (const size_t slash = key.rfind('/'); slash != std::string_view::npos) {
    key.remove_prefix(slash + 1);
  }
  if (const size_t amp = key.find('&'); amp != std::string_view::npos) key = key.substr(0, amp);
  const size_t dash = key.rfind('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const std::optional<Be32> addr = parse_ipv4(key.substr(0, dash));
  const std::string_view len_text = key.substr(dash + 1);
  unsigned len = 0;
  const auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (!addr || ec != std::errc() || end != len_text.data() + len_text.size() || len_text.empty() ||
      len > 32) {
    return std::nullopt;
  }
  const Ipv4Prefix p{*addr, static_cast<uint8_t>(len)};
  if ((addr->host() & ~Ipv4Prefix::host_mask(p.length)) != 0) return std::nullopt;
  return p;
}

std::string format_lease_value(Be32 public_ip) {
  return "{\"PublicIP\":\"" + format_ipv4(public_ip) + "\",\"PublicIPv6\":null}";
}

std::optional<LeaseValue> parse_lease_value(std::string_view json) {
  if (json_limits_exceeded(json, kLeaseValueLimits)) return std::nullopt;
  const Json doc = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  const Json* ip = find_ci(doc, "PublicIP");
  if (!ip || !ip->is_string()) return std::nullopt;
  const std::optional<Be32> addr = parse_ipv4(ip->get<std::string>());
  if (!addr) return std::nullopt;
  LeaseValue v{*addr, {}};
  if (const Json* bt = find_ci(doc, "BackendType"); bt && bt->is_string()) {
    v.backend_type = bt->get<std::string>();
  }
  return v;
}

bool subnet_compatible(const NetConfig& cfg, const Ipv4Prefix& subnet) {
  return subnet.length == cfg.subnet_len && subnet.network.host() >= cfg.subnet_min.host() &&
         subnet.network.host() <= cfg.subnet_max.host();
}

AcquirePlan plan_acquisition(const NetConfig& cfg, Be32 public_ip,
                             const std::optional<Ipv4Prefix>& previous,
                             std::span<const Lease> leases, uint64_t random) {
  AcquirePlan plan;
  // No own addresses: a lease naming our public IP is the one to reuse
  // here, not a loop, and one naming another address of ours still holds
  // its key.
  const LeaseVerdicts verdicts = judge_leases({cfg.network, cfg.subnet_len, {}}, leases);
  std::vector<bool> accepted(leases.size(), false);
  for (const size_t i : verdicts.accepted) accepted[i] = true;
  std::vector<bool> removed(leases.size(), false);
  for (size_t i = 0; i < leases.size(); ++i) {
    const Lease& l = leases[i];
    if (l.public_ip != public_ip) continue;
    if (subnet_compatible(cfg, l.subnet)) {
      if (!accepted[i]) continue;  // an earlier lease holds its subnet: never ours
      plan.kind = AcquirePlan::Kind::kReuse;
      plan.subnet = l.subnet;
      plan.existing = l;
      plan.reason = l.reservation ? "reservation for our public IP" : "existing lease of our public IP";
      return plan;
    }
    if (!l.reservation) {
      // flannel deletes it too; the subnet becomes free for allocation.
      plan.remove.push_back(l.subnet);
      removed[i] = true;
    }
  }
  std::set<uint64_t> keys;         // subnets whose key exists
  std::vector<const Lease*> held;  // accepted leases: their space is taken
  for (size_t i = 0; i < leases.size(); ++i) {
    if (removed[i]) continue;
    keys.insert(lease_map_key(leases[i].subnet));
    if (accepted[i]) held.push_back(&leases[i]);
  }
  auto is_free = [&](const Ipv4Prefix& s) {
    return !keys.contains(lease_map_key(s)) &&
           std::none_of(held.begin(), held.end(),
                        [&](const Lease* l) { return overlaps(l->subnet, s); });
  };
  if (previous && subnet_compatible(cfg, *previous) && is_free(*previous)) {
    plan.kind = AcquirePlan::Kind::kCreate;
    plan.subnet = *previous;
    plan.reason = "subnet of the previous subnet.env";
    return plan;
  }
  std::vector<Ipv4Prefix> candidates;
  const uint64_t step = uint64_t{1} << (32 - cfg.subnet_len);
  for (uint64_t base = cfg.subnet_min.host();
       base <= cfg.subnet_max.host() && candidates.size() < kMaxCandidates; base += step) {
    const Ipv4Prefix s{Be32::from_host(static_cast<uint32_t>(base)), cfg.subnet_len};
    if (is_free(s)) candidates.push_back(s);
  }
  if (candidates.empty()) {
    plan.kind = AcquirePlan::Kind::kExhausted;
    plan.reason = "out of subnets";
    return plan;
  }
  plan.kind = AcquirePlan::Kind::kCreate;
  plan.subnet = candidates[random % candidates.size()];
  plan.reason = "random pick among " + std::to_string(candidates.size()) + " free subnet(s)";
  return plan;
}

std::string lease_id(const Lease& l) {
  if (!l.key.empty()) return l.key;
  return format_ipv4(l.subnet.network) + "-" + std::to_string(l.subnet.length);
}

uint64_t lease_map_key(const Ipv4Prefix& p) {
  return (uint64_t{p.network.host()} << 8) | p.length;
}

std::vector<LeaseEvent> diff_leases(LeaseMap& known, std::span<const Lease> current) {
  std::vector<LeaseEvent> events;
  LeaseMap next;
  for (const Lease& l : current) next[lease_id(l)] = l;
  for (const auto& [key, lease] : known) {
    if (!next.contains(key)) events.push_back({LeaseEvent::Kind::kRemoved, lease});
  }
  for (const auto& [key, lease] : next) {
    const auto it = known.find(key);
    if (it == known.end() || !(it->second == lease)) {
      events.push_back({LeaseEvent::Kind::kAdded, lease});
    }
  }
  known = std::move(next);
  return events;
}

void apply_event(LeaseMap& known, const LeaseEvent& ev) {
  if (ev.kind == LeaseEvent::Kind::kAdded) {
    known[lease_id(ev.lease)] = ev.lease;
  } else {
    known.erase(lease_id(ev.lease));
  }
}

}  // namespace udpring::core

namespace udpring::core {

int64_t renew_time(int64_t expiry_unix, int64_t ttl_s, int64_t margin_s) {
  return expiry_unix - (margin_s < ttl_s ? margin_s : ttl_s / 2);
}

}  // namespace udpring::core
