#pragma once
// Control-plane input the daemon rejected (a wrong JSON type, too big,
// nested too deep, not a regular file), counted by where it came from:
// /metrics' udpring_control_input_errors_total{source}. Each rejection was
// skipped or retried; none stops the daemon.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace udpring::core {

enum class InputSource : uint8_t {
  kConfig,  // the network config (wherever it is read from), subnet.env
  kEtcd,    // etcd's answers and lease keys
  kFile,    // the file store's directory
  kKube,    // the Kubernetes API's answers, Node objects, the token file
};
inline constexpr size_t kInputSourceCount = 4;
inline constexpr std::array<std::string_view, kInputSourceCount> kInputSourceNames = {
    "config", "etcd", "file", "kube"};

/// Written by the control thread and the stores' threads, read by the
/// metrics thread. Relaxed: each count is a value of its own.
class InputErrors {
 public:
  void count(InputSource s) noexcept {
    n_[static_cast<size_t>(s)].fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t get(InputSource s) const noexcept {
    return n_[static_cast<size_t>(s)].load(std::memory_order_relaxed);
  }
  std::array<uint64_t, kInputSourceCount> values() const noexcept {
    std::array<uint64_t, kInputSourceCount> out{};
    for (size_t i = 0; i < kInputSourceCount; ++i) out[i] = n_[i].load(std::memory_order_relaxed);
    return out;
  }

 private:
  std::array<std::atomic<uint64_t>, kInputSourceCount> n_{};
};

}  // namespace udpring::core
