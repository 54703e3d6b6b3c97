#pragma once
// The overlay route table: which peer (host:port) owns the subnet a packet is
// addressed to. flannel's proxy_amd64.c scanned a linked list per packet;
// here workers read an immutable snapshot with a fixed number of loads and
// no lock, and the control thread swaps in a new snapshot on every change.
//
// RouteSnapshot is a 16-8-8 multibit trie with prefix expansion (the layout
// of DPDK's DIR-24-8 with a smaller first level, so an empty table costs
// 256 KiB, not 64 MiB):
//   level 1: root_[addr >> 16], 65536 entries;
//   level 2: a 256-entry group indexed by bits 15..8;
//   level 3: a 256-entry group indexed by bits 7..0.
// An entry is either a leaf (a next-hop index, 0 = no route) or, with
// kChildFlag set, the offset of a child group in groups_. A prefix ends in
// level 1 (length <= 16), 2 (<= 24) or 3, and is expanded into all the
// entries of that level it covers: 2^(16-L), 2^(24-L) or 2^(32-L) of them.
//
// RouteTable owns the current snapshot and publishes replacements with a
// release store; old snapshots are freed through Qsbr once every worker has
// passed a quiescent point.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "core/be32.h"
#include "core/ipv4_addr.h"
#include "core/qsbr.h"

namespace udpring::core {

/// Where to send a packet: a peer's public address and UDP port.
struct NextHop {
  Be32 addr;             // peer address, network byte order
  uint16_t port_be = 0;  // peer UDP port, network byte order (flannel: 8285)
  // The largest inner packet the path to this peer carries, in bytes, once
  // a router told us of a smaller MTU on the way (ICMP fragmentation
  // needed); 0 = none known, the TUN MTU holds.
  uint16_t max_inner = 0;

  friend bool operator==(const NextHop&, const NextHop&) = default;
};

/// One overlay subnet and the peer that owns it.
struct Route {
  Ipv4Prefix prefix;
  NextHop hop;

  friend bool operator==(const Route&, const Route&) = default;
};

/// An immutable longest-prefix-match table. Built once by the control
/// thread, then read concurrently by any number of threads with no lock.
class RouteSnapshot {
 public:
  /// Builds a snapshot from `routes`, which may overlap (the longest prefix
  /// wins) and may repeat a prefix (the last occurrence wins). Host bits of
  /// each prefix are ignored. Lengths 0..32 are valid.
  /// Throws std::invalid_argument for a length above 32, std::length_error
  /// if the trie would outgrow its 31-bit indices, std::bad_alloc.
  static std::unique_ptr<const RouteSnapshot> build(std::span<const Route> routes);

  RouteSnapshot(const RouteSnapshot&) = delete;
  RouteSnapshot& operator=(const RouteSnapshot&) = delete;

  /// Longest-prefix match for `dst`; nullptr if no route covers it. At most
  /// three dependent loads; the result lives as long as the snapshot.
  const NextHop* lookup(Be32 dst) const noexcept;

  /// lookup() for each of `dsts`, written to the same index of `out`. The
  /// spans must have the same length (only the shorter prefix of both is
  /// processed otherwise). Any batch size; no allocation.
  void lookup_batch(std::span<const Be32> dsts, std::span<const NextHop*> out) const noexcept;

  /// True if some route's next hop has address `addr`: a datagram from any
  /// other source is not from a peer and gets dropped. O(1) expected (open
  /// addressing at load factor <= 1/2), no allocation.
  bool is_peer(Be32 addr) const noexcept;

  /// Number of distinct prefixes (after de-duplication).
  size_t route_count() const noexcept { return routes_.size(); }

  /// Heap and object bytes owned by this snapshot, for metrics.
  size_t memory_bytes() const noexcept;

  /// The de-duplicated routes this snapshot was built from, host bits
  /// cleared, sorted by (network, length). For logging and metrics.
  std::span<const Route> routes() const noexcept { return routes_; }

 private:
  friend class RouteSnapshotBuilder;

  RouteSnapshot() = default;

  static constexpr uint32_t kChildFlag = 0x8000'0000u;
  static constexpr uint32_t kIndexMask = ~kChildFlag;
  static constexpr uint32_t kRootBits = 16;
  static constexpr uint32_t kRootEntries = 1u << kRootBits;
  static constexpr uint32_t kGroupBits = 8;
  static constexpr uint32_t kGroupEntries = 1u << kGroupBits;

  // Fibonacci hashing: the top bits of addr * 2^64/phi.
  size_t peer_slot(Be32 addr) const noexcept {
    return static_cast<size_t>((uint64_t{addr.raw} * 0x9E37'79B9'7F4A'7C15ull) >> peer_shift_);
  }

  // Level 1, inline so lookup() needs no pointer load to reach it: 256 KiB,
  // which is why snapshots only live on the heap.
  std::array<uint32_t, kRootEntries> root_;
  // Level-2 and level-3 groups, kGroupEntries each; a child entry holds the
  // offset of its group's first entry.
  std::vector<uint32_t> groups_;
  // Distinct next hops; index 0 is a placeholder so that leaf 0 means miss.
  std::vector<NextHop> hops_;
  // Open-addressing set of next-hop addresses (Be32::raw); 0 marks an empty
  // slot, so the address 0.0.0.0 is tracked by zero_peer_ instead. Size is a
  // power of two with at least one empty slot.
  std::vector<uint32_t> peers_;
  uint32_t peer_shift_ = 63;  // 64 - log2(peers_.size())
  bool zero_peer_ = false;
  std::vector<Route> routes_;
};

inline const NextHop* RouteSnapshot::lookup(Be32 dst) const noexcept {
  const uint32_t addr = dst.host();
  uint32_t entry = root_[addr >> kRootBits];
  if (entry & kChildFlag) {
    entry = groups_[(entry & kIndexMask) | ((addr >> kGroupBits) & (kGroupEntries - 1))];
    if (entry & kChildFlag) {
      entry = groups_[(entry & kIndexMask) | (addr & (kGroupEntries - 1))];
    }
  }
  // Computes the address without loading the NextHop. Leaf 0 (miss) is
  // turned into nullptr with a mask, not `entry ? p : nullptr`, which GCC 12
  // compiles to a branch that mispredicts on mixed hit/miss traffic.
  const uintptr_t hit_mask = uintptr_t{0} - uintptr_t{entry != 0};
  return reinterpret_cast<const NextHop*>(reinterpret_cast<uintptr_t>(hops_.data() + entry) &
                                          hit_mask);
}

inline void RouteSnapshot::lookup_batch(std::span<const Be32> dsts,
                                        std::span<const NextHop*> out) const noexcept {
  const size_t n = dsts.size() < out.size() ? dsts.size() : out.size();
  // A plain loop on purpose. Lookups are independent, so the CPU already
  // overlaps their loads. On the 2-vCPU AMD EPYC VM this was tuned on, level-
  // by-level interleaving (branchy or branchless) and root/group prefetching
  // all measured slower than this (by up to 2x): the root fits in L2 and the
  // extra instructions cost more than the misses they hide.
  // TODO: revisit with prefetching if route tables outgrow the LLC.
  for (size_t i = 0; i < n; ++i) {
    out[i] = lookup(dsts[i]);
  }
}

inline bool RouteSnapshot::is_peer(Be32 addr) const noexcept {
  if (addr.raw == 0) {
    return zero_peer_;
  }
  const size_t mask = peers_.size() - 1;
  // Terminates: build() keeps at least half of the slots empty.
  for (size_t i = peer_slot(addr);; i = (i + 1) & mask) {
    if (peers_[i] == addr.raw) {
      return true;
    }
    if (peers_[i] == 0) {
      return false;
    }
  }
}

/// The single-writer owner of the live RouteSnapshot. The control thread
/// edits a pending route set and publishes it; workers read current().
class RouteTable {
 public:
  /// Publishes an empty snapshot so current() is never null. `qsbr` must
  /// outlive the table and register every thread that calls current().
  explicit RouteTable(Qsbr& qsbr);

  /// Frees the current and all retired snapshots. The caller guarantees no
  /// reader still uses them (workers joined).
  ~RouteTable();

  RouteTable(const RouteTable&) = delete;
  RouteTable& operator=(const RouteTable&) = delete;

  /// Control thread. Adds `route` to the pending set, replacing any route
  /// with the same prefix (host bits ignored). Not visible until publish().
  /// Throws std::invalid_argument for a prefix length above 32.
  void set(const Route& route);

  /// Control thread. Removes the route with exactly `prefix` from the
  /// pending set; false if there was none. Not visible until publish().
  bool remove(const Ipv4Prefix& prefix);

  /// Control thread. Makes `routes` the whole pending set (duplicate prefix:
  /// the last wins), e.g. after an etcd compaction. On exception the pending
  /// set is unchanged. Not visible until publish().
  void replace_all(std::span<const Route> routes);

  /// Control thread. Builds a snapshot of the pending set, makes it
  /// current(), retires the previous one and calls reclaim(). Throws what
  /// RouteSnapshot::build() throws; current() is unchanged then.
  void publish();

  /// Control thread. Frees retired snapshots that every reader has passed;
  /// returns how many remain retired. Call periodically (e.g. on a timer)
  /// so snapshots retired while a worker was busy get freed.
  size_t reclaim();

  /// Any registered reader, while online: the live snapshot, valid until
  /// the reader's next Qsbr::quiescent() or offline(). The control thread
  /// may call it too without registering, as it is the only one that frees.
  const RouteSnapshot* current() const noexcept {
    // acquire: pairs with publish()'s release store, so the snapshot's
    // contents (written by build()) are visible before we read them.
    return current_.load(std::memory_order_acquire);
  }

  /// Control thread. Routes in the pending set.
  size_t pending_count() const noexcept { return pending_.size(); }

  /// Control thread. From the next publish() on, every route to `peer`
  /// carries max_inner = `bytes` (0: no limit again). True if that changed.
  bool set_path_limit(Be32 peer, uint16_t bytes);

 private:
  struct Retired {
    uint64_t epoch;  // free once qsbr_.all_passed(epoch)
    std::unique_ptr<const RouteSnapshot> snapshot;
  };

  // (network in host order << 8 | length): orders like routes().
  static uint64_t key_of(const Ipv4Prefix& prefix) noexcept;

  Qsbr& qsbr_;
  // Control-thread only: the routes the next publish() will build.
  std::map<uint64_t, Route> pending_;
  // Control-thread only: NextHop::max_inner by peer address (raw).
  std::map<uint32_t, uint16_t> path_limits_;
  // Owned; written by the control thread, read by workers.
  std::atomic<const RouteSnapshot*> current_{nullptr};
  // Control-thread only, in ascending epoch order.
  std::vector<Retired> retired_;
};

}  // namespace udpring::core
