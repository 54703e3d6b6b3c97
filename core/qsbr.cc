#include "core/qsbr.h"

namespace udpring::core {

Qsbr::Qsbr(size_t readers)
    : reader_count_(readers), readers_(std::make_unique<ReaderState[]>(readers)) {}

bool Qsbr::all_passed(uint64_t epoch) const noexcept {
  for (size_t id = 0; id < reader_count_; ++id) {
    // acquire: pairs with the release store in quiescent()/offline(), so the
    // reader's accesses to objects retired before `epoch` happen-before the
    // caller frees them. The store->load race with online() is covered by
    // the seq_cst fence in advance(), which precedes this load.
    const uint64_t seen = readers_[id].seen.load(std::memory_order_acquire);
    if (seen != kOffline && seen < epoch) {
      return false;
    }
  }
  return true;
}

}  // namespace udpring::core
