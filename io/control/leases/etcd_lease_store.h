#pragma once
// flannel's etcd v3 datastore, through etcd's JSON gateway:
//   <prefix>/config                   the network config
//   <prefix>/subnets/10.5.34.0-24      {"PublicIP":"...","PublicIPv6":null}, on an etcd lease
// Compatible with stock flanneld nodes on the same etcd, with flannel's
// known bugs fixed: a lost creation race is retried, renewal moves the key
// to a new etcd lease only if it is still on ours and then revokes the old
// one (no orphans, no overwriting), and reservations (keys with no lease)
// are never converted or deleted.
//
// The watch runs on its own thread (a long-lived HTTP stream) and hands
// updates to the control thread through a queue; it reconnects with
// backoff from 100 ms to 5 s and re-lists when etcd compacted past it.
// Renewals run on a thread of their own too, so that an etcd slow to
// answer never holds up the control thread.
//
// Every answer is read with checked types (checked_json.h): a malformed
// one is a StoreInputError, counted and retried like an outage; a
// malformed key or value is skipped with a warning, the others served.

#include <atomic>
#include <thread>

#include "io/control/leases/etcd_client.h"
#include "io/control/leases/etcd_messages.h"
#include "io/control/leases/lease_store.h"
#include "io/control/leases/update_queue.h"

namespace udpring::io {

class EtcdLeaseStore : public LeaseStore {
 public:
  EtcdLeaseStore(EtcdConfig cfg, std::string prefix, int64_t ttl_s, int64_t margin_s,
                 StoreContext ctx = {});
  ~EtcdLeaseStore() override;

  std::string describe() const override;
  std::string read_config() override;
  core::Lease acquire(const core::NetConfig& cfg, core::Be32 public_ip,
                      const std::optional<core::Ipv4Prefix>& previous) override;
  bool wait_update(std::chrono::milliseconds timeout, core::LeaseUpdate& out) override;
  void maintain() override;
  core::LeaseStoreStatus status() const override;

 private:
  EtcdListing list(EtcdClient& client);
  int64_t grant(EtcdClient& client, int64_t ttl_s);
  void revoke(EtcdClient& client, int64_t id);
  /// Puts our value on `lease_id` if the key's current state matches
  /// (`compare`: a gateway compare object). True if it did.
  bool txn_put(EtcdClient& client, const std::string& key, const nlohmann::json& compare,
               int64_t lease_id);
  /// The etcd lease `key` is attached to (0: none), nullopt if it is absent.
  std::optional<int64_t> key_lease(EtcdClient& client, const std::string& key);
  core::Lease acquire_once(const core::NetConfig& cfg, core::Be32 public_ip,
                           const std::optional<core::Ipv4Prefix>& previous);
  void renew_loop();
  void renew(EtcdClient& client);
  void watch_loop(int64_t next_rev, core::LeaseMap known);
  void count_input_error() const;

  EtcdConfig cfg_;
  std::string prefix_;
  std::string subnets_;
  int64_t ttl_s_;
  int64_t margin_s_;
  StoreContext ctx_;
  EtcdClient client_;  // control thread

  // Our lease: acquire() writes it on the control thread, then only the
  // renewal thread, which maintain() starts after it, touches it.
  std::thread renewer_;
  std::optional<core::Lease> own_;
  core::Be32 own_ip_;
  int64_t next_renew_ = 0;
  int64_t pending_lease_ = 0;  // granted by a renewal whose txn outcome is unknown
  std::atomic<int64_t> own_expiry_{0};
  std::atomic<uint64_t> renewals_{0}, renew_failures_{0};

  // The watch thread and its queue.
  bool watching_ = false;
  std::thread watcher_;
  UpdateQueue updates_;
  std::atomic<uint64_t> reconnects_{0}, relists_{0};
  std::atomic<bool> connected_{false};
};

}  // namespace udpring::io
