#include "core/peer_routes.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace udpring::core {
namespace {

// What the operator can do about a refusal, for the warning.
const char* refusal_fix(LeaseRefusal r) {
  switch (r) {
    case LeaseRefusal::kWrongLength:
      return "delete the lease, or set net-conf SubnetLen to the length every node uses";
    case LeaseRefusal::kOutsideNetwork: return "delete the lease, or fix net-conf Network";
    case LeaseRefusal::kPublicIpNotUnicast:
    case LeaseRefusal::kPublicIpOurs:
    case LeaseRefusal::kPublicIpInNetwork:
      return "delete the lease, or fix the address its node advertises (--public-ip, --iface)";
    case LeaseRefusal::kOverlap: return "delete one of the two";
  }
  return "";
}

}  // namespace

PeerRoutes::PeerRoutes(RouteTable& table, LeasePolicy policy, Ipv4Prefix own, Be32 own_ip,
                       uint16_t port)
    : table_(table), policy_(std::move(policy)), own_(own), own_ip_(own_ip), port_be_(htons(port)) {}

std::string PeerRoutes::describe(const Lease& l) const {
  return "lease " + lease_id(l) + " (" + format_prefix(l.subnet) + " -> " + format_ipv4(l.public_ip) +
         ")";
}

std::array<uint64_t, kLeaseRefusalCount> PeerRoutes::refused_now() const {
  std::array<uint64_t, kLeaseRefusalCount> n{};
  for (const auto& [id, refusal] : refused_) ++n[static_cast<size_t>(refusal.reason)];
  return n;
}

PeerRoutes::Result PeerRoutes::apply(const LeaseUpdate& update) {
  return apply(std::span<const LeaseUpdate>(&update, 1));
}

PeerRoutes::Result PeerRoutes::apply(std::span<const LeaseUpdate> updates) {
  Result r;
  bool changed = false;
  for (const LeaseUpdate& update : updates) changed |= apply_one(update, r);
  // Renewals (the bulk of all events) change no verdict: no re-judging.
  if (changed) reconcile(r);
  if (r.added || r.removed) table_.publish();
  return r;
}

// Our lease, as an event or in a snapshot: learn its id, or notice that it
// now names someone else (the store's record of our lease was taken over).
void PeerRoutes::own_added(const Lease& l, Result& r) {
  const std::string id = lease_id(l);
  if (!own_id_ && l.public_ip == own_ip_) own_id_ = id;
  if ((!own_id_ || *own_id_ == id) && l.public_ip != own_ip_) {
    r.own_lost = "lease " + format_prefix(own_) + " now names PublicIP " + format_ipv4(l.public_ip) +
                 ", not ours";
  }
}

bool PeerRoutes::apply_one(const LeaseUpdate& update, Result& r) {
  if (update.reset) {
    known_.clear();
    for (const Lease& l : update.leases) known_[lease_id(l)] = l;
    if (!own_id_) {
      // The earliest lease of our subnet with our PublicIP is ours.
      const Lease* mine = nullptr;
      for (const auto& [id, l] : known_) {
        if (l.subnet == own_ && l.public_ip == own_ip_ && (!mine || created_before(l, *mine))) {
          mine = &l;
        }
      }
      if (mine) own_id_ = lease_id(*mine);
    }
    const Lease* own = nullptr;
    for (const auto& [id, l] : known_) {
      if (l.subnet == own_ && (own_id_ ? *own_id_ == id : !own)) own = &l;
    }
    if (own) {
      own_added(*own, r);
    } else {
      r.own_lost = "lease " + format_prefix(own_) + " is no longer in the store";
    }
    return true;
  }
  bool changed = false;
  for (const LeaseEvent& ev : update.events) {
    const std::string id = lease_id(ev.lease);
    const bool ours = ev.lease.subnet == own_ && (!own_id_ || *own_id_ == id);
    if (ev.kind == LeaseEvent::Kind::kAdded) {
      if (ours) own_added(ev.lease, r);
      const auto [it, added] = known_.try_emplace(id, ev.lease);
      if (!added) {
        // What verdicts and logs depend on; the rest (expiry, etcd lease)
        // is a renewal.
        const Lease& was = it->second;
        changed |= was.subnet != ev.lease.subnet || was.public_ip != ev.lease.public_ip ||
                   was.created != ev.lease.created || was.backend_type != ev.lease.backend_type;
        it->second = ev.lease;
      }
      changed |= added;
    } else {
      if (ours) r.own_lost = "lease " + format_prefix(own_) + " was deleted or expired";
      changed |= known_.erase(id) > 0;
    }
  }
  return changed;
}

void PeerRoutes::reconcile(Result& r) {
  std::vector<const Lease*> all;
  all.reserve(known_.size());
  std::optional<size_t> own;
  for (const auto& [id, l] : known_) {
    if (own_id_ && *own_id_ == id && l.public_ip == own_ip_) own = all.size();
    all.push_back(&l);
  }
  const LeaseVerdicts v = judge_leases(policy_, std::span<const Lease* const>(all), own);

  // The routes we want, by subnet; never our own subnet, whoever claims it.
  std::vector<std::pair<uint64_t, const Lease*>> want;
  want.reserve(v.accepted.size());
  for (const size_t i : v.accepted) {
    if (i != own && all[i]->subnet != own_) want.emplace_back(lease_map_key(all[i]->subnet), all[i]);
  }
  // Accepted leases are disjoint: the keys are distinct.
  std::sort(want.begin(), want.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  // Merge the two sorted sets: drop what is no longer wanted, set what is
  // new or has a new next hop.
  auto it = routes_.begin();
  for (const auto& [key, l] : want) {
    while (it != routes_.end() && it->first < key) {
      table_.remove(it->second.subnet);
      spdlog::info("route {} removed", format_prefix(it->second.subnet));
      ++r.removed;
      it = routes_.erase(it);
    }
    if (it != routes_.end() && it->first == key && it->second.public_ip == l->public_ip) {
      it->second = *l;  // a renewal: same next hop
      ++it;
      continue;
    }
    table_.set({l->subnet, {l->public_ip, port_be_}});
    ++r.added;
    spdlog::info("route {} -> {}:{}{}", format_prefix(l->subnet), format_ipv4(l->public_ip),
                 ntohs(port_be_),
                 l->backend_type.empty() || l->backend_type == "udp"
                     ? ""
                     : " (peer says BackendType " + l->backend_type + "; sent udp as flannel does)");
    if (it != routes_.end() && it->first == key) {
      it->second = *l;
      ++it;
    } else {
      it = std::next(routes_.emplace_hint(it, key, *l));
    }
  }
  while (it != routes_.end()) {
    table_.remove(it->second.subnet);
    spdlog::info("route {} removed", format_prefix(it->second.subnet));
    ++r.removed;
    it = routes_.erase(it);
  }

  // Refusals: each one is logged and counted once, when it first appears
  // or changes; an update that leaves it as it was says nothing.
  std::map<std::string, Refusal> refused;
  for (const LeaseVerdicts::Refused& x : v.refused) {
    const Lease& l = *all[x.index];
    const std::string winner = x.winner ? lease_id(*all[*x.winner]) : std::string();
    if (own && x.index == *own) {
      r.own_lost = describe(*all[*x.winner]) + ", created before ours, holds our subnet " +
                   format_prefix(own_);
      continue;
    }
    Refusal refusal{l, x.reason, winner};
    std::string id = lease_id(l);
    const auto before = refused_.find(id);
    if (before == refused_.end() || !before->second.same(refusal)) {
      ++refused_total_[static_cast<size_t>(x.reason)];
      std::string instead;
      if (x.winner) {
        instead = (own && *x.winner == *own) ? "this node's own lease holds that space"
                                             : describe(*all[*x.winner]) + " holds that space";
      } else {
        instead = "nothing is routed for it";
      }
      spdlog::warn("not routing {}: {} ({}); {}; {}", describe(l),
                   refusal_text(x.reason, policy_), refusal_name(x.reason), instead,
                   refusal_fix(x.reason));
    }
    refused.emplace(std::move(id), std::move(refusal));
  }
  refused_ = std::move(refused);
}

}  // namespace udpring::core
