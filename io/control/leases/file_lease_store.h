#pragma once
// The embedded lease store: a directory of lease files, so several daemons
// on one machine (in network namespaces) allocate and find each other with
// no server. Same names and values as flannel's etcd layout:
//   DIR/config                      the network config (optional; else --net-config-path)
//   DIR/subnets/10.5.34.0-24        {"PublicIP":"192.168.77.1","PublicIPv6":null}
// A lease expires at its file's mtime, which the owner sets to now + TTL and
// pushes forward on renewal; a file whose mtime is the epoch (touch -d @0)
// never expires: a reservation. Allocation holds flock(DIR/.lock); watching
// is inotify on DIR/subnets plus a once-a-second rescan for expiry. A
// lease's creation order (which of two overlapping leases wins) is its
// file's birth time.
//
// The directory may be writable by others: an entry that is not a regular
// file of at most 4 KiB (a FIFO, a symlink, a device, a huge file) is
// skipped, warned about and counted once, never opened for a blocking or
// unbounded read (small_file.h); the other leases are still served. The
// allocation lock is waited for at most a second.

#include <chrono>
#include <set>
#include <string>

#include "core/unique_fd.h"
#include "io/control/leases/lease_store.h"

namespace udpring::io {

class FileLeaseStore : public LeaseStore {
 public:
  /// Creates DIR and DIR/subnets if missing. `fallback_config` is read when
  /// DIR/config does not exist ("" = none).
  FileLeaseStore(std::string dir, std::string fallback_config, int64_t ttl_s, int64_t margin_s,
                 StoreContext ctx = {});

  std::string describe() const override { return "file " + dir_; }
  std::string read_config() override;
  core::Lease acquire(const core::NetConfig& cfg, core::Be32 public_ip,
                      const std::optional<core::Ipv4Prefix>& previous) override;
  bool wait_update(std::chrono::milliseconds timeout, core::LeaseUpdate& out) override;
  void maintain() override;
  core::LeaseStoreStatus status() const override { return status_; }

 private:
  std::string path_of(const core::Ipv4Prefix& subnet) const;
  /// Every unexpired, parseable lease; `reap` deletes expired files (only
  /// under the allocation lock: their owners are gone).
  std::vector<core::Lease> scan(bool reap);
  /// Warns about and counts a bad entry, the first time for this reason.
  bool skip(const std::string& path, const std::string& why);
  void write_lease(const core::Ipv4Prefix& subnet, core::Be32 public_ip, int64_t expiry,
                   bool exclusive);
  /// Our existing lease with a new expiry.
  void refresh_lease(const core::Ipv4Prefix& subnet, core::Be32 public_ip, int64_t expiry);

  std::string dir_;
  std::string subnets_dir_;
  std::string fallback_config_;
  int64_t ttl_s_;
  int64_t margin_s_;
  StoreContext ctx_;
  std::set<std::string> warned_;  // path and reason of each bad entry reported
  core::UniqueFd inotify_;
  bool snapshot_sent_ = false;
  core::LeaseMap known_;
  std::chrono::steady_clock::time_point last_scan_{};
  std::optional<core::Lease> own_;
  int64_t next_renew_ = 0;
  core::LeaseStoreStatus status_;
};

}  // namespace udpring::io
