// Lease keys and values as a store lists them (etcd's keys, the file
// store's names, both stores' JSON values), through core::parse_lease_key
// and parse_lease_value, and the decisions made from such a list:
// core::plan_acquisition and diff_leases.
//
// Input: lines of "<key>\t<value>"; the first line's key also stands for
// the previous subnet.env's lease. What parses must print back to itself;
// the plan must never hand out a subnet someone else holds.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/lease.h"
#include "core/lease_policy.h"
#include "core/net_config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace udpring;

const core::Be32 kOwnIp = *core::parse_ipv4("192.168.1.10");

bool overlaps(const core::Ipv4Prefix& a, const core::Ipv4Prefix& b) {
  return a.contains(b) || b.contains(a);
}

std::optional<core::Ipv4Prefix> key_of(std::string_view key) {
  const auto p = core::parse_lease_key(key);
  if (!p) return p;
  FUZZ_CHECK(p->length <= 32);
  FUZZ_CHECK((p->network.host() & ~core::Ipv4Prefix::host_mask(p->length)) == 0);
  for (const std::string_view prefix : {core::kDefaultEtcdPrefix, std::string_view("/x/")}) {
    FUZZ_CHECK(core::parse_lease_key(core::lease_key(prefix, *p)) == p);
  }
  return p;
}

std::optional<core::LeaseValue> value_of(std::string_view value) {
  const auto v = core::parse_lease_value(value);
  if (!v) return v;
  const auto again = core::parse_lease_value(core::format_lease_value(v->public_ip));
  FUZZ_CHECK(again && again->public_ip == v->public_ip && again->backend_type.empty());
  return v;
}

void check_plan(const core::NetConfig& cfg, const std::optional<core::Ipv4Prefix>& previous,
                const std::vector<core::Lease>& leases, uint64_t random) {
  const core::AcquirePlan plan = core::plan_acquisition(cfg, kOwnIp, previous, leases, random);
  // What allocation must avoid, of all but our own leases that are no
  // reservation: the exact key of each, and the space of each the lease
  // policy routes (a refused lease, e.g. 0.0.0.0-0, holds no space).
  const core::LeaseVerdicts verdicts = core::judge_leases({cfg.network, cfg.subnet_len, {}}, leases);
  std::vector<bool> accepted(leases.size(), false);
  for (const size_t i : verdicts.accepted) accepted[i] = true;
  const auto is_free = [&](const core::Ipv4Prefix& s) {
    for (size_t i = 0; i < leases.size(); ++i) {
      const core::Lease& l = leases[i];
      if (l.public_ip == kOwnIp && !l.reservation) continue;
      if (l.subnet == s || (accepted[i] && overlaps(l.subnet, s))) return false;
    }
    return true;
  };
  switch (plan.kind) {
    case core::AcquirePlan::Kind::kReuse:
      FUZZ_CHECK(plan.existing && plan.existing->public_ip == kOwnIp);
      FUZZ_CHECK(plan.existing->subnet == plan.subnet && core::subnet_compatible(cfg, plan.subnet));
      break;
    case core::AcquirePlan::Kind::kCreate:
      FUZZ_CHECK(core::subnet_compatible(cfg, plan.subnet) && is_free(plan.subnet));
      break;
    case core::AcquirePlan::Kind::kExhausted:
      for (uint64_t b = cfg.subnet_min.host(); b <= cfg.subnet_max.host(); b += 1u << (32 - cfg.subnet_len)) {
        FUZZ_CHECK(!is_free({core::Be32::from_host(static_cast<uint32_t>(b)), cfg.subnet_len}));
      }
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A /22 of /24s: a few leases can fill it, so every plan kind is reached.
  static const core::NetConfig cfg = core::parse_net_config(R"({"Network":"10.5.0.0/22"})");
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<core::Lease> leases;
  std::optional<core::Ipv4Prefix> previous;
  for (bool first = true; !text.empty(); first = false) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    const size_t tab = line.find('\t');
    const auto subnet = key_of(line.substr(0, tab));
    if (first) previous = subnet;
    if (tab == std::string_view::npos) continue;
    const auto value = value_of(line.substr(tab + 1));
    if (!subnet || !value) continue;
    core::Lease l;
    l.subnet = *subnet;
    l.public_ip = value->public_ip;
    l.backend_type = value->backend_type;
    l.reservation = leases.size() % 2 == 1;  // etcd: a key with no lease
    l.store_lease = l.reservation ? 0 : static_cast<int64_t>(leases.size()) + 1;
    l.key = std::string(line.substr(0, tab));
    leases.push_back(l);
  }
  check_plan(cfg, previous, leases, size);

  core::LeaseMap known;
  const auto events = core::diff_leases(known, leases);
  core::LeaseMap want;  // the last lease of each key wins
  for (const core::Lease& l : leases) want[core::lease_id(l)] = l;
  FUZZ_CHECK(known == want && events.size() == want.size());
  core::LeaseMap replayed;
  for (const core::LeaseEvent& ev : events) {
    FUZZ_CHECK(ev.kind == core::LeaseEvent::Kind::kAdded);
    core::apply_event(replayed, ev);
  }
  FUZZ_CHECK(replayed == known);
  FUZZ_CHECK(core::diff_leases(known, leases).empty());  // nothing changed since
  return 0;
}
