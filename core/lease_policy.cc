#include "core/lease_policy.h"

#include <algorithm>
#include <string>

namespace udpring::core {
namespace {

// The first and last address of a prefix, as host-order numbers.
uint32_t first_of(const Ipv4Prefix& p) { return p.network.host(); }
uint32_t last_of(const Ipv4Prefix& p) { return p.network.host() | ~Ipv4Prefix::host_mask(p.length); }

}  // namespace

std::string_view refusal_name(LeaseRefusal r) {
  switch (r) {
    case LeaseRefusal::kWrongLength: return "wrong_length";
    case LeaseRefusal::kOutsideNetwork: return "outside_network";
    case LeaseRefusal::kPublicIpNotUnicast: return "public_ip_not_unicast";
    case LeaseRefusal::kPublicIpOurs: return "public_ip_ours";
    case LeaseRefusal::kPublicIpInNetwork: return "public_ip_in_network";
    case LeaseRefusal::kOverlap: return "overlap";
  }
  return "unknown";
}

std::string refusal_text(LeaseRefusal r, const LeasePolicy& policy) {
  const std::string network = format_prefix(policy.network);
  switch (r) {
    case LeaseRefusal::kWrongLength:
      return "its prefix length is not the network's SubnetLen " +
             std::to_string(policy.subnet_len);
    case LeaseRefusal::kOutsideNetwork: return "it is not inside Network " + network;
    case LeaseRefusal::kPublicIpNotUnicast:
      return "its PublicIP is not a unicast address (0/8, loopback, link-local, multicast or 240/4)";
    case LeaseRefusal::kPublicIpOurs: return "its PublicIP is this node's own address";
    case LeaseRefusal::kPublicIpInNetwork:
      return "its PublicIP is inside Network " + network + " (the overlay itself)";
    case LeaseRefusal::kOverlap: return "it overlaps an earlier lease";
  }
  return "unknown";
}

bool unicast_public_ip(Be32 a) {
  const uint32_t h = a.host();
  const uint32_t top = h >> 24;
  return top != 0                   // 0.0.0.0/8: "this network"
         && top != 127              // loopback
         && (h >> 16) != 0xa9fe     // 169.254/16: link-local
         && top < 224;              // 224/4 multicast, 240/4 class E and 255.255.255.255
}

bool created_before(const Lease& a, const Lease& b) {
  if (a.created != b.created) return a.created < b.created;
  if (a.key != b.key) return a.key < b.key;
  return lease_map_key(a.subnet) < lease_map_key(b.subnet);
}

std::optional<LeaseRefusal> check_lease(const LeasePolicy& policy, const Lease& l) {
  if (l.subnet.length != policy.subnet_len) return LeaseRefusal::kWrongLength;
  if (!policy.network.contains(l.subnet)) return LeaseRefusal::kOutsideNetwork;
  if (!unicast_public_ip(l.public_ip)) return LeaseRefusal::kPublicIpNotUnicast;
  if (std::find(policy.own_addresses.begin(), policy.own_addresses.end(), l.public_ip) !=
      policy.own_addresses.end()) {
    return LeaseRefusal::kPublicIpOurs;
  }
  if (policy.network.contains(l.public_ip)) return LeaseRefusal::kPublicIpInNetwork;
  return std::nullopt;
}

std::vector<std::optional<size_t>> first_claims(std::span<const Ipv4Prefix> in_order) {
  // Two IPv4 prefixes are either nested or disjoint, so the distinct
  // prefixes form a forest by containment. Sorted by first address, wider
  // first, they are that forest in preorder, and a stack of open ranges
  // gives each one its parent. A prefix overlaps an accepted one exactly
  // when one of its ancestors is accepted, or it or one of its descendants
  // is: `held` and `below` record those, and every step walks one chain of
  // ancestors (at most 33 long; 1 when all leases have one length). Flat
  // arrays, no tree of nodes to chase (bench/lease_policy_bench.cc).
  constexpr size_t kNone = static_cast<size_t>(-1);
  const size_t n = in_order.size();
  std::vector<std::pair<uint64_t, size_t>> by_address(n);
  for (size_t k = 0; k < n; ++k) {
    by_address[k] = {(uint64_t{first_of(in_order[k])} << 8) | in_order[k].length, k};
  }
  std::sort(by_address.begin(), by_address.end());
  struct Node {
    uint32_t last;        // last address of the prefix
    size_t parent;        // the smallest prefix strictly containing it, or kNone
    size_t held = kNone;  // the accepted lease of exactly this prefix
    size_t below = kNone;  // an accepted lease of this prefix or one inside it
  };
  std::vector<Node> nodes;
  nodes.reserve(n);
  std::vector<size_t> node_of(n);
  std::vector<size_t> open;  // the chain of prefixes containing the current one
  for (size_t i = 0; i < n; ++i) {
    const auto [key, k] = by_address[i];
    if (i > 0 && key == by_address[i - 1].first) {
      node_of[k] = nodes.size() - 1;  // the same prefix again
      continue;
    }
    const Ipv4Prefix& p = in_order[k];
    while (!open.empty() && nodes[open.back()].last < first_of(p)) open.pop_back();
    nodes.push_back({last_of(p), open.empty() ? kNone : open.back()});
    open.push_back(nodes.size() - 1);
    node_of[k] = nodes.size() - 1;
  }
  std::vector<std::optional<size_t>> out(n);
  for (size_t k = 0; k < n; ++k) {
    const size_t v = node_of[k];
    if (nodes[v].below != kNone) {
      out[k] = nodes[v].below;
      continue;
    }
    for (size_t a = nodes[v].parent; a != kNone && !out[k]; a = nodes[a].parent) {
      if (nodes[a].held != kNone) out[k] = nodes[a].held;
    }
    if (out[k]) continue;
    nodes[v].held = k;
    for (size_t a = v; a != kNone && nodes[a].below == kNone; a = nodes[a].parent) nodes[a].below = k;
  }
  return out;
}

LeaseVerdicts judge_leases(const LeasePolicy& policy, std::span<const Lease* const> leases,
                           std::optional<size_t> own) {
  LeaseVerdicts v;
  std::vector<size_t> candidates;
  candidates.reserve(leases.size());
  for (size_t i = 0; i < leases.size(); ++i) {
    if (own && *own == i) {
      candidates.push_back(i);
    } else if (const auto why = check_lease(policy, *leases[i])) {
      v.refused.push_back({i, *why, std::nullopt});
    } else {
      candidates.push_back(i);
    }
  }
  // Sorted by a copy of `created`, so that only ties look at the leases.
  std::vector<std::pair<int64_t, size_t>> order;
  order.reserve(candidates.size());
  for (const size_t i : candidates) order.emplace_back(leases[i]->created, i);
  std::sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return created_before(*leases[a.second], *leases[b.second]);
  });
  std::vector<Ipv4Prefix> prefixes;
  prefixes.reserve(order.size());
  for (size_t k = 0; k < order.size(); ++k) {
    candidates[k] = order[k].second;
    prefixes.push_back(leases[candidates[k]]->subnet);
  }
  const std::vector<std::optional<size_t>> claims = first_claims(prefixes);
  v.accepted.reserve(candidates.size());
  for (size_t k = 0; k < candidates.size(); ++k) {
    if (claims[k]) {
      v.refused.push_back({candidates[k], LeaseRefusal::kOverlap, candidates[*claims[k]]});
    } else {
      v.accepted.push_back(candidates[k]);
    }
  }
  std::sort(v.refused.begin(), v.refused.end(),
            [](const LeaseVerdicts::Refused& a, const LeaseVerdicts::Refused& b) {
              return a.index < b.index;
            });
  return v;
}

LeaseVerdicts judge_leases(const LeasePolicy& policy, std::span<const Lease> leases,
                           std::optional<size_t> own) {
  std::vector<const Lease*> ptrs;
  ptrs.reserve(leases.size());
  for (const Lease& l : leases) ptrs.push_back(&l);
  return judge_leases(policy, std::span<const Lease* const>(ptrs), own);
}

}  // namespace udpring::core
