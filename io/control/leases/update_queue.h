#pragma once
// The hand-over from a store's watch thread to the control thread: lease
// updates in order, a stop flag the watch's streams poll, and the watch's
// backoff sleep, which stop() cuts short.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "core/lease.h"

namespace udpring::io {

class UpdateQueue {
 public:
  void push(core::LeaseUpdate u) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(u));
    }
    cv_.notify_all();
  }

  /// Waits up to `timeout` for the next update. (The control loop gathers
  /// what comes within its settle time and applies it with one rebuild.)
  bool pop(std::chrono::milliseconds timeout, core::LeaseUpdate& out) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); })) return false;
    out = std::move(queue_.front());
    queue_.pop_front();
    return true;
  }

  void stop() {
    {
      std::lock_guard lock(mu_);  // so a watcher about to sleep cannot miss it
      stop_.store(true);
    }
    cv_.notify_all();
  }
  bool stopped() const { return stop_.load(); }
  /// For transfers that poll it.
  const std::atomic<bool>& stop_flag() const { return stop_; }

  /// Sleeps for `d` unless stop() comes first.
  void sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [&] { return stop_.load(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<core::LeaseUpdate> queue_;
  std::atomic<bool> stop_{false};
};

}  // namespace udpring::io
