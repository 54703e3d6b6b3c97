#pragma once
// Quiescent-state-based reclamation (QSBR) for a fixed set of reader threads.
//
// Workers read shared, immutable objects (route snapshots) through an atomic
// pointer with no lock and no per-read bookkeeping. The control thread swaps
// in a new object, calls advance(), and may free the old one once
// all_passed(epoch) is true: by then every worker has either reported a
// quiescent point ("I hold no references from before now") at or after that
// epoch, or is offline. This is the scheme of DPDK's lib/rcu/rte_rcu_qsbr.h
// reduced to what udpring needs: one writer, readers fixed at construction.
//
// Reader protocol (worker-only, per reader id):
//   online(id);                 // once at start, and after every blocking call
//   loop {
//     auto* t = table.current();  // load shared pointers only while online
//     ... use t ...
//     quiescent(id);            // once per turn, after dropping all references
//     offline(id); block(); online(id);  // around io_uring_wait_cqe etc.
//   }
//   offline(id);                // before the thread exits
//
// Writer protocol (control thread only):
//   ptr.store(new_obj, release); e = advance(); retire(old_obj, e);
//   ... later: if (all_passed(e)) delete old_obj;

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace udpring::core {

/// Grace-period tracking for a fixed set of readers and one writer. Reader
/// methods are called only by the thread owning that id; advance() and
/// all_passed() only by the writer. See the protocol above.
class Qsbr {
 public:
  /// Registers `readers` reader ids, 0..readers-1. Every reader starts
  /// offline, so a worker that never starts never blocks reclamation.
  explicit Qsbr(size_t readers);

  Qsbr(const Qsbr&) = delete;
  Qsbr& operator=(const Qsbr&) = delete;

  /// Number of reader ids registered at construction.
  size_t readers() const noexcept { return reader_count_; }

  /// Reader `id` is about to read shared pointers again (at thread start, or
  /// after a blocking syscall). Must be called before the first current()
  /// load of the turn. Cost: a full fence; call it only when leaving a block.
  void online(size_t id) noexcept {
    // acquire: pairs with the release half of advance()'s fetch_add. If we
    // read epoch E here, every pointer the writer stored before bumping to E
    // is visible to our later loads, so claiming "seen E" is truthful.
    const uint64_t epoch = global_.epoch.load(std::memory_order_acquire);
    // release: the writer may free an object on seeing this value (if
    // `epoch` is new enough), so our reads from before we went offline must
    // happen-before that, and since C++20 the earlier release store in
    // offline() no longer heads a release sequence covering this store.
    readers_[id].seen.store(epoch, std::memory_order_release);
    // seq_cst fence: this is the store->load (Dekker) race. We store `seen`
    // and then load the shared pointer; the writer stores the pointer and
    // then (after advance()'s fence) loads `seen`. Without a full fence on
    // both sides both loads could return the old values: the writer would
    // see us offline and free the old object while we go on to load and use
    // it. With the two seq_cst fences in one total order, either the writer
    // sees our `seen` (and waits for us), or our pointer load after this
    // fence sees the writer's new pointer. Release/acquire alone cannot
    // order a store before a later load, so this is the one place that
    // needs seq_cst.
    seq_cst_fence();
  }

  /// Reader `id` holds no reference obtained before this call. Call once per
  /// loop turn while online. Writes the reader's cache line only when the
  /// global epoch moved since the last report, so an idle control plane
  /// costs readers one shared read-only load per turn.
  void quiescent(size_t id) noexcept {
    // acquire: as in online(), if we report epoch E we must also be able to
    // see every pointer published before E on our next turn.
    const uint64_t epoch = global_.epoch.load(std::memory_order_acquire);
    ReaderState& self = readers_[id];
    // relaxed: only this thread ever writes `seen`, so it reads its own
    // last store.
    if (self.seen.load(std::memory_order_relaxed) != epoch) {
      // release: every read of the old objects made this turn happens-before
      // the writer's acquire load in all_passed() that observes this value,
      // and so before the writer frees them. No Dekker race here: we were
      // already online, so the writer cannot have mistaken us for offline.
      self.seen.store(epoch, std::memory_order_release);
    }
  }

  /// Reader `id` is about to block and holds no references; until online()
  /// it counts as quiescent for every epoch.
  void offline(size_t id) noexcept {
    // release: our reads of shared objects happen-before the writer's
    // acquire load that sees kOffline, and so before it frees anything.
    readers_[id].seen.store(kOffline, std::memory_order_release);
  }

  /// Writer only. Call after storing a new shared pointer (release) and
  /// before retiring the old object; returns the epoch to tag it with. An
  /// object retired with epoch E may be freed once all_passed(E) is true.
  uint64_t advance() noexcept {
    // acq_rel: the release half publishes the pointer stored before this
    // call to readers that acquire the new epoch. The writer is the only
    // thread that modifies `epoch`, so the RMW never contends.
    const uint64_t epoch = global_.epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
    // seq_cst fence: the writer half of the Dekker pair described in
    // online(). Every all_passed() load comes after this fence in program
    // order, so a reader seen offline here is guaranteed to load the new
    // pointer when it comes back online.
    seq_cst_fence();
    return epoch;
  }

  /// Writer only. True if every reader is offline or has reported a
  /// quiescent point at an epoch >= `epoch`.
  bool all_passed(uint64_t epoch) const noexcept;

  /// The current global epoch (starts at 1). For tests and metrics.
  uint64_t epoch() const noexcept {
    // relaxed: a plain read for reporting; orders nothing.
    return global_.epoch.load(std::memory_order_relaxed);
  }

 private:
  // std::atomic_thread_fence(seq_cst). GCC's TSan instruments it as
  // __tsan_atomic_thread_fence (still a real fence) but warns (-Wtsan) that
  // TSan does not model fences. It need not: every happens-before edge this
  // class relies on is a release/acquire pair; the fences only forbid the
  // store->load reordering in online(), which TSan never simulates.
  static void seq_cst_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#pragma GCC diagnostic pop
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  }

  // Hard-coded rather than std::hardware_destructive_interference_size,
  // which GCC warns about in headers (its value may differ between TUs).
  static constexpr size_t kCacheLineBytes = 64;
  // `seen` value of an offline reader. Real epochs start at 1.
  static constexpr uint64_t kOffline = 0;

  // One per reader, on its own cache line: written only by its reader,
  // read by the writer in all_passed().
  struct alignas(kCacheLineBytes) ReaderState {
    // Last epoch this reader reported, or kOffline.
    std::atomic<uint64_t> seen{kOffline};
  };

  // Own line too: read by every reader every turn, written once per
  // publish. Sharing a line with reader_count_/readers_ would be harmless
  // (read-only), but not with anything a reader writes.
  struct alignas(kCacheLineBytes) GlobalState {
    std::atomic<uint64_t> epoch{1};
  };

  GlobalState global_;
  size_t reader_count_;
  std::unique_ptr<ReaderState[]> readers_;
};

}  // namespace udpring::core
