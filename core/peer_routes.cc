#include "core/peer_routes.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <vector>

namespace udpring::core {

PeerRoutes::PeerRoutes(RouteTable& table, Ipv4Prefix own, Be32 own_ip, uint16_t port)
    : table_(table), own_(own), own_ip_(own_ip), port_be_(htons(port)) {}

void PeerRoutes::add(const Lease& l, Result& r) {
  if (l.subnet == own_) {
    if (l.public_ip != own_ip_) {
      r.own_lost = "lease " + format_prefix(own_) + " now names PublicIP " +
                   format_ipv4(l.public_ip) + ", not ours";
    }
    return;
  }
  const auto key = lease_map_key(l.subnet);
  const auto it = peers_.find(key);
  if (it != peers_.end() && it->second.public_ip == l.public_ip) {
    it->second = l;  // a renewal: same next hop
    return;
  }
  table_.set({l.subnet, {l.public_ip, port_be_}});
  peers_[key] = l;
  ++r.added;
  spdlog::info("route {} -> {}:{}{}", format_prefix(l.subnet), format_ipv4(l.public_ip),
               ntohs(port_be_),
               l.backend_type.empty() || l.backend_type == "udp"
                   ? ""
                   : " (peer says BackendType " + l.backend_type + "; sent udp as flannel does)");
}

void PeerRoutes::remove(const Lease& l, Result& r) {
  if (l.subnet == own_) {
    r.own_lost = "lease " + format_prefix(own_) + " was deleted or expired";
    return;
  }
  if (peers_.erase(lease_map_key(l.subnet)) == 0) return;
  table_.remove(l.subnet);
  ++r.removed;
  spdlog::info("route {} removed", format_prefix(l.subnet));
}

PeerRoutes::Result PeerRoutes::apply(const LeaseUpdate& update) {
  return apply(std::span<const LeaseUpdate>(&update, 1));
}

PeerRoutes::Result PeerRoutes::apply(std::span<const LeaseUpdate> updates) {
  Result r;
  for (const LeaseUpdate& update : updates) apply_one(update, r);
  if (r.added || r.removed) table_.publish();
  return r;
}

void PeerRoutes::apply_one(const LeaseUpdate& update, Result& r) {
  if (update.reset) {
    bool own_seen = false;
    LeaseMap next;
    for (const Lease& l : update.leases) {
      if (l.subnet == own_) own_seen = true;
      next[lease_map_key(l.subnet)] = l;
    }
    std::vector<Lease> gone;
    for (const auto& [key, l] : peers_) {
      if (!next.contains(key)) gone.push_back(l);
    }
    for (const Lease& l : gone) remove(l, r);
    for (const auto& [key, l] : next) add(l, r);
    if (!own_seen) r.own_lost = "lease " + format_prefix(own_) + " is no longer in the store";
  } else {
    for (const LeaseEvent& ev : update.events) {
      if (ev.kind == LeaseEvent::Kind::kAdded) {
        add(ev.lease, r);
      } else {
        remove(ev.lease, r);
      }
    }
  }
}

}  // namespace udpring::core
