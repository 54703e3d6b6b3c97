#include "core/route_table.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

namespace udpring::core {

namespace {

uint64_t hop_key(const NextHop& hop) noexcept {
  return (uint64_t{hop.addr.raw} << 16) | hop.port_be;
}

Route normalized(const Route& route) {
  if (route.prefix.length > 32) {
    throw std::invalid_argument("route prefix length " + std::to_string(route.prefix.length) +
                                " > 32");
  }
  Route out = route;
  out.prefix.network =
      Be32::from_host(route.prefix.network.host() & Ipv4Prefix::host_mask(route.prefix.length));
  return out;
}

}  // namespace

// Fills a RouteSnapshot's trie. Only build() uses it; a class rather than
// free functions so it can reach RouteSnapshot's private layout.
class RouteSnapshotBuilder {
 public:
  explicit RouteSnapshotBuilder(RouteSnapshot& snap) : snap_(snap) {
    // memset rather than fill: one call instead of 64Ki stores, which
    // matters under TSan, where each store is instrumented.
    std::memset(snap_.root_.data(), 0, sizeof(snap_.root_));
  }

  // Reserves exactly the groups insert() will create, so groups_ (tens of
  // MiB at 100k scattered routes) never reallocates or needs shrinking:
  // one level-2 group per distinct /16 holding a prefix longer than 16, one
  // level-3 group per distinct /24 holding a prefix longer than 24.
  void reserve_groups(std::span<const Route> routes) {
    std::vector<uint32_t> level2;
    std::vector<uint32_t> level3;
    for (const Route& route : routes) {
      const uint32_t addr = route.prefix.network.host();
      if (route.prefix.length > 16) {
        level2.push_back(addr >> 16);
      }
      if (route.prefix.length > 24) {
        level3.push_back(addr >> 8);
      }
    }
    const auto distinct = [](std::vector<uint32_t>& keys) {
      std::sort(keys.begin(), keys.end());
      return static_cast<size_t>(std::unique(keys.begin(), keys.end()) - keys.begin());
    };
    const size_t groups = distinct(level2) + distinct(level3);
    if (groups > (size_t{RouteSnapshot::kIndexMask} + 1) / RouteSnapshot::kGroupEntries) {
      throw std::length_error("route trie exceeds 2^31 group entries");
    }
    snap_.groups_.reserve(groups * RouteSnapshot::kGroupEntries);
  }

  // Expands `prefix` to leaf `hop_index`. Callers insert in ascending
  // prefix length, so every entry a prefix covers holds a leaf from a
  // shorter (or no) prefix and is simply overwritten: a child group below
  // it could only come from a longer prefix, which is inserted later.
  void insert(const Ipv4Prefix& prefix, uint32_t hop_index) {
    const uint32_t addr = prefix.network.host();
    const uint32_t len = prefix.length;
    auto& root = snap_.root_;
    std::vector<uint32_t>& groups = snap_.groups_;
    if (len <= 16) {
      fill(root.data() + (addr >> 16), 16 - len, hop_index);
      return;
    }
    uint32_t& root_entry = root[addr >> 16];
    const uint32_t level2 = child_offset(root_entry);
    root_entry = RouteSnapshot::kChildFlag | level2;
    const size_t slot2 = level2 + ((addr >> 8) & 0xff);
    if (len <= 24) {
      fill(groups.data() + slot2, 24 - len, hop_index);
      return;
    }
    // Index groups again after child_offset() rather than holding a
    // reference across it: without reserve_groups() it could reallocate.
    const uint32_t level3 = child_offset(groups[slot2]);
    groups[slot2] = RouteSnapshot::kChildFlag | level3;
    fill(groups.data() + level3 + (addr & 0xff), 32 - len, hop_index);
  }

 private:
  // Sets the 2^free_bits entries at `first` to a leaf. `first` is aligned to
  // that size because host bits are clear, so the run stays in one group.
  static void fill(uint32_t* first, uint32_t free_bits, uint32_t hop_index) {
    std::fill(first, first + (size_t{1} << free_bits), hop_index);
  }

  // The offset of the child group below an entry with value `entry`. A leaf
  // is first split into a new group filled with that leaf, so the addresses
  // a new longer prefix does not cover keep the shorter prefix's hop.
  uint32_t child_offset(uint32_t entry) {
    if (entry & RouteSnapshot::kChildFlag) {
      return entry & RouteSnapshot::kIndexMask;
    }
    const size_t offset = snap_.groups_.size();
    // reserve_groups() has checked the total; this guards its arithmetic.
    if (offset + RouteSnapshot::kGroupEntries > size_t{RouteSnapshot::kIndexMask} + 1) {
      throw std::length_error("route trie exceeds 2^31 group entries");
    }
    snap_.groups_.resize(offset + RouteSnapshot::kGroupEntries, entry);
    return static_cast<uint32_t>(offset);
  }

  RouteSnapshot& snap_;
};

std::unique_ptr<const RouteSnapshot> RouteSnapshot::build(std::span<const Route> routes) {
  // Default-initialized: the builder clears root_ itself.
  std::unique_ptr<RouteSnapshot> snap(new RouteSnapshot);

  // De-duplicate: stable-sort by (network, length), keep the last of each
  // run of equal prefixes ("last one wins", as with repeated set()).
  std::vector<Route> sorted;
  sorted.reserve(routes.size());
  for (const Route& route : routes) {
    sorted.push_back(normalized(route));
  }
  const auto prefix_less = [](const Route& a, const Route& b) {
    const uint32_t na = a.prefix.network.host();
    const uint32_t nb = b.prefix.network.host();
    return na != nb ? na < nb : a.prefix.length < b.prefix.length;
  };
  std::stable_sort(sorted.begin(), sorted.end(), prefix_less);
  std::vector<Route>& unique = snap->routes_;
  unique.reserve(sorted.size());
  for (const Route& route : sorted) {
    if (!unique.empty() && unique.back().prefix == route.prefix) {
      unique.back() = route;
    } else {
      unique.push_back(route);
    }
  }
  unique.shrink_to_fit();

  // Distinct next hops; flannel gives every node its own subnet, so this
  // mostly saves memory when extra routes share a gateway.
  snap->hops_.push_back(NextHop{});  // index 0: miss
  std::vector<uint32_t> hop_index(unique.size());
  {
    std::unordered_map<uint64_t, uint32_t> index_of;
    index_of.reserve(unique.size());
    for (size_t i = 0; i < unique.size(); ++i) {
      const auto [it, added] =
          index_of.try_emplace(hop_key(unique[i].hop), static_cast<uint32_t>(snap->hops_.size()));
      if (added) {
        if (snap->hops_.size() > kIndexMask) {
          throw std::length_error("route table exceeds 2^31 next hops");
        }
        snap->hops_.push_back(unique[i].hop);
      }
      hop_index[i] = it->second;
    }
  }
  snap->hops_.shrink_to_fit();

  // Shorter prefixes first, so longer ones overwrite their expansion.
  std::vector<uint32_t> order(unique.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = static_cast<uint32_t>(i);
  }
  std::stable_sort(order.begin(), order.end(), [&unique](uint32_t a, uint32_t b) {
    return unique[a].prefix.length < unique[b].prefix.length;
  });
  RouteSnapshotBuilder builder(*snap);
  builder.reserve_groups(unique);
  for (const uint32_t i : order) {
    builder.insert(unique[i].prefix, hop_index[i]);
  }

  // Peer set over distinct addresses (hops_ may repeat an address with
  // different ports). At least twice as many slots as addresses keeps
  // linear probes short and guarantees an empty slot to stop on.
  const size_t slots = std::bit_ceil(std::max<size_t>(2, 2 * snap->hops_.size()));
  snap->peers_.assign(slots, 0);
  snap->peer_shift_ = static_cast<uint32_t>(64 - std::countr_zero(slots));
  const size_t mask = slots - 1;
  for (size_t h = 1; h < snap->hops_.size(); ++h) {
    const Be32 addr = snap->hops_[h].addr;
    if (addr.raw == 0) {
      snap->zero_peer_ = true;
      continue;
    }
    size_t i = snap->peer_slot(addr);
    while (snap->peers_[i] != 0 && snap->peers_[i] != addr.raw) {
      i = (i + 1) & mask;
    }
    snap->peers_[i] = addr.raw;
  }

  return snap;
}

size_t RouteSnapshot::memory_bytes() const noexcept {
  // sizeof(*this) includes root_.
  return sizeof(*this) + groups_.capacity() * sizeof(groups_[0]) +
         hops_.capacity() * sizeof(hops_[0]) + peers_.capacity() * sizeof(peers_[0]) +
         routes_.capacity() * sizeof(routes_[0]);
}

RouteTable::RouteTable(Qsbr& qsbr) : qsbr_(qsbr) {
  // relaxed: no reader can hold a reference to this table yet; whoever
  // hands the table to the workers (thread creation) provides the ordering.
  current_.store(RouteSnapshot::build({}).release(), std::memory_order_relaxed);
}

RouteTable::~RouteTable() {
  // relaxed: callers guarantee readers are gone (joined), which orders
  // their accesses before this.
  delete current_.load(std::memory_order_relaxed);
}

uint64_t RouteTable::key_of(const Ipv4Prefix& prefix) noexcept {
  return (uint64_t{prefix.network.host()} << 8) | prefix.length;
}

void RouteTable::set(const Route& route) {
  const Route clean = normalized(route);
  pending_.insert_or_assign(key_of(clean.prefix), clean);
}

bool RouteTable::remove(const Ipv4Prefix& prefix) {
  if (prefix.length > 32) {
    return false;
  }
  const Ipv4Prefix clean{
      Be32::from_host(prefix.network.host() & Ipv4Prefix::host_mask(prefix.length)), prefix.length};
  return pending_.erase(key_of(clean)) != 0;
}

void RouteTable::replace_all(std::span<const Route> routes) {
  std::map<uint64_t, Route> next;
  for (const Route& route : routes) {
    const Route clean = normalized(route);
    next.insert_or_assign(key_of(clean.prefix), clean);
  }
  pending_.swap(next);
}

bool RouteTable::set_path_limit(Be32 peer, uint16_t bytes) {
  const auto it = path_limits_.find(peer.raw);
  const uint16_t now = it == path_limits_.end() ? 0 : it->second;
  if (now == bytes) {
    return false;
  }
  if (bytes == 0) {
    path_limits_.erase(it);
  } else {
    path_limits_[peer.raw] = bytes;
  }
  return true;
}

void RouteTable::publish() {
  std::vector<Route> routes;
  routes.reserve(pending_.size());
  for (const auto& [key, route] : pending_) {
    routes.push_back(route);
    const auto limit = path_limits_.find(route.hop.addr.raw);
    routes.back().hop.max_inner = limit == path_limits_.end() ? 0 : limit->second;
  }
  std::unique_ptr<const RouteSnapshot> next = RouteSnapshot::build(routes);
  // Reserve first so nothing below can throw once the new snapshot is live.
  // Grow geometrically: a stuck worker can make the list long.
  if (retired_.size() == retired_.capacity()) {
    retired_.reserve(std::max<size_t>(8, 2 * retired_.size()));
  }

  // relaxed: this thread is the only writer of current_.
  std::unique_ptr<const RouteSnapshot> previous(current_.load(std::memory_order_relaxed));
  // release: pairs with current()'s acquire load, so a worker that sees the
  // new pointer also sees everything build() wrote into the snapshot.
  current_.store(next.release(), std::memory_order_release);
  // Must come after the store: a reader that reports this epoch (or comes
  // online after it) has loaded the new pointer, so it cannot hold
  // `previous` any more. See Qsbr::online() for the online race.
  const uint64_t epoch = qsbr_.advance();
  retired_.push_back(Retired{epoch, std::move(previous)});
  reclaim();
}

size_t RouteTable::reclaim() {
  // Epochs ascend along retired_, all_passed(e) implies all_passed(e') for
  // every e' < e, and once true it stays true, so the freeable entries form
  // a prefix. Probe the oldest first (cheap exit while a worker is slow),
  // then walk down from the newest: usually one call frees everything.
  if (retired_.empty() || !qsbr_.all_passed(retired_.front().epoch)) {
    return retired_.size();
  }
  size_t freeable = retired_.size();
  while (freeable > 1 && !qsbr_.all_passed(retired_[freeable - 1].epoch)) {
    --freeable;
  }
  retired_.erase(retired_.begin(), retired_.begin() + static_cast<std::ptrdiff_t>(freeable));
  return retired_.size();
}

}  // namespace udpring::core
