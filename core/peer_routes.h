#pragma once
// Lease events → the route table (flannel's processSubnetEvents): a peer's
// lease routes its subnet to PublicIP:our port; the node's own lease is
// never routed, and losing it is reported so the daemon can exit as flanneld
// does ("Lease has been revoked"). BackendType is ignored, as flannel's udp
// backend ignores it. Control thread only.

#include <cstdint>
#include <span>
#include <string>

#include "core/lease.h"
#include "core/route_table.h"

namespace udpring::core {

class PeerRoutes {
 public:
  /// `own_ip`: our PublicIP, to tell a renewal of our lease from a takeover.
  PeerRoutes(RouteTable& table, Ipv4Prefix own, Be32 own_ip, uint16_t port);

  struct Result {
    size_t added = 0;    // routes set (new or changed next hop)
    size_t removed = 0;  // routes deleted
    std::string own_lost;  // non-empty: our lease was deleted, expired or taken
  };
  /// Applies `update` and publishes the table once if anything changed.
  /// Each change is logged at info level.
  Result apply(const LeaseUpdate& update);
  /// Applies `updates` in order and publishes once: the table is rebuilt
  /// per publish, so a burst of lease events costs one rebuild, not one
  /// per event.
  Result apply(std::span<const LeaseUpdate> updates);

  size_t route_count() const { return peers_.size(); }

 private:
  void apply_one(const LeaseUpdate& update, Result& r);
  void add(const Lease& l, Result& r);
  void remove(const Lease& l, Result& r);

  RouteTable& table_;
  Ipv4Prefix own_;
  Be32 own_ip_;
  uint16_t port_be_;
  LeaseMap peers_;  // what is in the table now
};

}  // namespace udpring::core
