#pragma once
// The subnet manager: where this node's lease and everyone else's come
// from. One implementation per --subnet-mgr (etcd, file); the
// static mode needs none. Control thread only.

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/input_errors.h"
#include "core/lease.h"
#include "core/net_config.h"

namespace udpring::io {

/// The store could not answer for now (unreachable, an error it may get
/// over): the daemon retries every second, as flanneld does, and keeps
/// forwarding to the peers it knows. Any other exception is final.
class StoreUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What the store answered (or a file of it holds) is not what its protocol
/// says: a field of the wrong JSON type, too big, nested too deep, not a
/// regular file. Counted in udpring_control_input_errors_total and retried
/// like an outage: a broken or hostile store never stops the daemon.
class StoreInputError : public StoreUnavailable {
 public:
  using StoreUnavailable::StoreUnavailable;
};

/// What the daemon hands every store; both may be null (tests).
struct StoreContext {
  core::InputErrors* input_errors = nullptr;  // what the store rejects is counted here
  /// Requests the store makes on the caller's thread (the control thread)
  /// end within a second of one of these signals (SIGINT, SIGTERM) pending.
  const sigset_t* stop_signals = nullptr;
};

class LeaseStore {
 public:
  virtual ~LeaseStore() = default;

  /// Where the store lives, for logs ("etcd http://...", "file /var/lib/...").
  virtual std::string describe() const = 0;

  /// The network config JSON text. Throws std::runtime_error when it cannot
  /// be read; the caller retries every second, as flanneld does.
  virtual std::string read_config() = 0;

  /// Takes this node's lease (flannel's order, core::plan_acquisition),
  /// retrying lost creation races. Throws std::runtime_error naming the
  /// cause when no lease can be had.
  virtual core::Lease acquire(const core::NetConfig& cfg, core::Be32 public_ip,
                              const std::optional<core::Ipv4Prefix>& previous) = 0;

  /// Waits up to `timeout` for lease changes. The first call returns the
  /// complete set (reset). Returns false when nothing changed.
  virtual bool wait_update(std::chrono::milliseconds timeout, core::LeaseUpdate& out) = 0;

  /// Keeps our lease (renewal when due) and tells the cluster we are up,
  /// once acquire() has succeeded. Returns at once: what takes a server's
  /// answer (etcd renewals, the kube Node condition) runs on a thread of the
  /// store's own, which the first call starts, so a slow server never holds
  /// up lease events or signals. Errors are logged, counted and retried
  /// later (renewals every minute, as flanneld), never thrown.
  virtual void maintain() = 0;

  virtual core::LeaseStoreStatus status() const = 0;
};

}  // namespace udpring::io
