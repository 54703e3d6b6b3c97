#pragma once
// A chore the control loop has done every so often on a thread of its own,
// because one run may take seconds: iptables-save on a node where
// kube-proxy keeps 100,000 rules, or an iptables-restore waiting for the
// xtables lock. The control loop meanwhile goes on applying lease events
// and answering signals.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace udpring::io {

class PeriodicTask {
 public:
  /// Runs `task` every `period`, the first time one period from now.
  /// `task` must not throw.
  PeriodicTask(std::chrono::milliseconds period, std::function<void()> task);
  /// Wakes the thread and joins it; a run in progress finishes first.
  ~PeriodicTask();
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

 private:
  void run();

  const std::chrono::milliseconds period_;
  const std::function<void()> task_;
  std::mutex mu_;  // guards stop_
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace udpring::io
