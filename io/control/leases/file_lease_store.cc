#include "io/control/leases/file_lease_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "core/json_limits.h"
#include "io/control/leases/small_file.h"

namespace udpring::io {
namespace {

// A lease value is about 50 bytes (a vxlan node's 150); a net-conf a few hundred.
constexpr size_t kMaxLeaseFileBytes = 4096;
// A /8 holds 65,536 /24 leases; entries past this many are not read.
constexpr size_t kMaxEntries = 65536;
// How long an allocation or a renewal waits for another daemon's allocation.
constexpr auto kLockWait = std::chrono::seconds(1);

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void make_dir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    throw std::runtime_error("mkdir " + path + ": " + std::strerror(errno));
  }
}

// flock for the duration of an allocation: list + create must not interleave
// with another daemon's. Waits at most kLockWait (an allocation holds it for
// milliseconds), so that a stuck holder cannot stall the control thread:
// then StoreUnavailable, and the caller tries again later.
class DirLock {
 public:
  explicit DirLock(const std::string& path)
      : fd_(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644)) {
    if (!fd_) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
    const auto deadline = std::chrono::steady_clock::now() + kLockWait;
    while (flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        throw std::runtime_error("flock " + path + ": " + std::strerror(errno));
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        throw StoreUnavailable(path + " is held by another process for more than 1 s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }  // the lock goes with the fd

 private:
  core::UniqueFd fd_;
};

}  // namespace

FileLeaseStore::FileLeaseStore(std::string dir, std::string fallback_config, int64_t ttl_s,
                               int64_t margin_s, StoreContext ctx)
    : dir_(std::move(dir)),
      subnets_dir_(dir_ + "/subnets"),
      fallback_config_(std::move(fallback_config)),
      ttl_s_(ttl_s),
      margin_s_(margin_s),
      ctx_(ctx) {
  make_dir(dir_);
  make_dir(subnets_dir_);
  inotify_ = core::UniqueFd(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify_) throw std::runtime_error(std::string("inotify_init1: ") + std::strerror(errno));
  if (inotify_add_watch(inotify_.get(), subnets_dir_.c_str(),
                        IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE |
                            IN_ATTRIB) < 0) {
    throw std::runtime_error("inotify_add_watch " + subnets_dir_ + ": " + std::strerror(errno));
  }
}

std::string FileLeaseStore::read_config() {
  // A FIFO, a device or a huge file is an error (the daemon counts it as
  // "config" and tries again), never a read that blocks or fills memory.
  // DIR/config is ours: no symlinks; --net-config-path may be a ConfigMap's.
  const std::string own = dir_ + "/config";
  try {
    if (auto f = read_small_file(own, core::kNetConfigLimits.max_bytes, Symlinks::kRefuse)) {
      return f->text;
    }
    if (!fallback_config_.empty()) {
      if (auto f = read_small_file(fallback_config_, core::kNetConfigLimits.max_bytes, Symlinks::kFollow)) {
        return f->text;
      }
      throw std::runtime_error("no network config: neither " + own + " nor --net-config-path " +
                               fallback_config_ + " exists");
    }
  } catch (const FileInputError& e) {
    throw StoreInputError(e.what());
  }
  throw std::runtime_error("no network config: " + own + " does not exist");
}

bool FileLeaseStore::skip(const std::string& path, const std::string& why) {
  // Reported and counted once per file and reason, however often it is
  // scanned; bounded, so a flood of bad files cannot fill memory.
  if (warned_.size() >= 4096) warned_.clear();
  if (!warned_.insert(path + '\0' + why).second) return false;
  spdlog::warn("skipping lease file {}: {}", core::printable(path), why);
  if (ctx_.input_errors) ctx_.input_errors->count(core::InputSource::kFile);
  return true;
}

std::string FileLeaseStore::path_of(const core::Ipv4Prefix& subnet) const {
  return subnets_dir_ + "/" + core::format_ipv4(subnet.network) + "-" +
         std::to_string(subnet.length);
}

std::vector<core::Lease> FileLeaseStore::scan(bool reap) {
  std::vector<core::Lease> out;
  DIR* d = opendir(subnets_dir_.c_str());
  if (d == nullptr) {
    spdlog::warn("cannot list {}: {}", subnets_dir_, std::strerror(errno));
    return out;
  }
  const int64_t now = now_unix();
  size_t entries = 0;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;  // ., .., temporaries
    if (++entries > kMaxEntries) {
      skip(subnets_dir_, "more than " + std::to_string(kMaxEntries) +
                             " entries; the rest are not read");
      break;
    }
    const std::string path = subnets_dir_ + "/" + name;
    const auto subnet = core::parse_lease_key(name);
    if (!subnet) {
      skip(path, "name is not a.b.c.d-len");
      continue;
    }
    std::optional<SmallFile> file;
    try {
      file = read_small_file(path, kMaxLeaseFileBytes, Symlinks::kRefuse);
    } catch (const FileInputError& err) {
      skip(path, err.what());
      continue;
    }
    if (!file) continue;  // deleted since readdir
    const auto value = core::parse_lease_value(file->text);
    if (!value) {
      skip(path, "value is not a lease");
      continue;
    }
    core::Lease l;
    l.subnet = *subnet;
    l.public_ip = value->public_ip;
    l.backend_type = value->backend_type;
    l.reservation = file->mtime_unix == 0;
    l.expiry_unix = l.reservation ? 0 : file->mtime_unix;
    l.key = name;
    // Creation order is the file's birth time: renewals (utimensat) and
    // our own reuse (touched in place) keep it, and creations are
    // serialised by the allocation lock. Where the filesystem records no
    // birth time, every file ties at 0 and the name decides.
    struct statx st{};
    if (statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BTIME, &st) == 0 &&
        (st.stx_mask & STATX_BTIME)) {
      l.created = int64_t{st.stx_btime.tv_sec} * 1'000'000'000 + st.stx_btime.tv_nsec;
    }
    if (!l.reservation && l.expiry_unix <= now) {
      if (reap && unlink(path.c_str()) == 0) {
        spdlog::info("deleted expired lease {} of {}", core::format_prefix(l.subnet),
                     core::format_ipv4(l.public_ip));
      }
      continue;
    }
    out.push_back(l);
  }
  closedir(d);
  last_scan_ = std::chrono::steady_clock::now();
  return out;
}

void FileLeaseStore::write_lease(const core::Ipv4Prefix& subnet, core::Be32 public_ip,
                                 int64_t expiry, bool exclusive) {
  static unsigned counter = 0;
  const std::string final_path = path_of(subnet);
  const std::string tmp =
      subnets_dir_ + "/.tmp-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
  unlink(tmp.c_str());  // a leftover of a crashed daemon with our pid (containers: pid 1)
  core::UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) throw std::runtime_error("create " + tmp + ": " + std::strerror(errno));
  const std::string value = core::format_lease_value(public_ip);
  const timespec times[2] = {{expiry, 0}, {expiry, 0}};
  int err = 0;
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    err = errno ? errno : EIO;
  } else if (fchmod(fd.get(), 0644) != 0 || futimens(fd.get(), times) != 0) {
    err = errno;
  }
  fd = core::UniqueFd();
  // link() fails if the name exists: the atomic "create if absent".
  if (err == 0 && (exclusive ? link(tmp.c_str(), final_path.c_str())
                             : rename(tmp.c_str(), final_path.c_str())) != 0) {
    err = errno;
  }
  unlink(tmp.c_str());
  if (err == EEXIST && exclusive) throw std::system_error(EEXIST, std::generic_category());
  if (err != 0) throw std::runtime_error("write lease " + final_path + ": " + std::strerror(err));
}

void FileLeaseStore::refresh_lease(const core::Ipv4Prefix& subnet, core::Be32 public_ip,
                                   int64_t expiry) {
  // Touched in place when it already holds our exact value, so that the
  // file keeps its birth time (its place in the creation order); replaced
  // otherwise.
  const std::string path = path_of(subnet);
  const timespec times[2] = {{expiry, 0}, {expiry, 0}};
  std::optional<SmallFile> file;
  try {
    file = read_small_file(path, kMaxLeaseFileBytes, Symlinks::kRefuse);
  } catch (const FileInputError&) {
    // not ours to touch in place: replaced below
  }
  if (file && file->text == core::format_lease_value(public_ip) &&
      utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0) {
    return;
  }
  write_lease(subnet, public_ip, expiry, false);
}

core::Lease FileLeaseStore::acquire(const core::NetConfig& cfg, core::Be32 public_ip,
                                    const std::optional<core::Ipv4Prefix>& previous) {
  DirLock lock(dir_ + "/.lock");
  std::mt19937_64 rng(std::random_device{}());
  for (int attempt = 1; attempt <= core::kAcquireAttempts; ++attempt) {
    const std::vector<core::Lease> leases = scan(/*reap=*/true);
    const core::AcquirePlan plan = core::plan_acquisition(cfg, public_ip, previous, leases, rng());
    for (const core::Ipv4Prefix& stale : plan.remove) {
      spdlog::info("deleting our lease {}: it does not fit the config any more",
                   core::format_prefix(stale));
      unlink(path_of(stale).c_str());
    }
    core::Lease l;
    l.subnet = plan.subnet;
    l.public_ip = public_ip;
    switch (plan.kind) {
      case core::AcquirePlan::Kind::kExhausted:
        throw std::runtime_error("out of subnets: every /" + std::to_string(cfg.subnet_len) +
                                 " from " + core::format_ipv4(cfg.subnet_min) + " to " +
                                 core::format_ipv4(cfg.subnet_max) + " is leased in " + dir_);
      case core::AcquirePlan::Kind::kReuse:
        l = *plan.existing;
        if (!l.reservation) {
          l.expiry_unix = now_unix() + ttl_s_;
          refresh_lease(l.subnet, public_ip, l.expiry_unix);
        }
        break;
      case core::AcquirePlan::Kind::kCreate:
        l.expiry_unix = now_unix() + ttl_s_;
        try {
          write_lease(l.subnet, public_ip, l.expiry_unix, true);
        } catch (const std::system_error&) {
          spdlog::info("lease {} was taken meanwhile; retrying ({}/{})",
                       core::format_prefix(l.subnet), attempt, core::kAcquireAttempts);
          continue;
        }
        break;
    }
    spdlog::info("lease {} ({}) in {}, {}", core::format_prefix(l.subnet), plan.reason, dir_,
                 l.reservation ? "a reservation: never expires"
                               : "expires in " + std::to_string(ttl_s_) + " s");
    own_ = l;
    status_.own_expiry_unix = l.expiry_unix;
    next_renew_ = l.reservation ? 0 : core::renew_time(l.expiry_unix, ttl_s_, margin_s_);
    return l;
  }
  // Other nodes may be starting at the same moment; a later try may win.
  throw StoreUnavailable("no lease after " + std::to_string(core::kAcquireAttempts) +
                           " attempts: every pick was taken by another node first");
}

bool FileLeaseStore::wait_update(std::chrono::milliseconds timeout, core::LeaseUpdate& out) {
  out = {};
  if (!snapshot_sent_) {
    snapshot_sent_ = true;
    out.reset = true;
    out.leases = scan(false);
    known_.clear();
    core::diff_leases(known_, out.leases);
    status_.watch_connected = true;
    return true;
  }
  // Wake for inotify, and at least once a second to notice expiries.
  const auto since = std::chrono::steady_clock::now() - last_scan_;
  const auto until_rescan =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::seconds(1) - since);
  const auto wait = std::max(std::chrono::milliseconds(0), std::min(timeout, until_rescan));
  pollfd p{inotify_.get(), POLLIN, 0};
  const int n = poll(&p, 1, static_cast<int>(wait.count()));
  bool changed = n > 0;
  if (changed) {
    char buf[4096];
    while (read(inotify_.get(), buf, sizeof buf) > 0) {
    }
  }
  if (!changed && std::chrono::steady_clock::now() - last_scan_ < std::chrono::seconds(1)) {
    return false;
  }
  out.events = core::diff_leases(known_, scan(false));
  return !out.events.empty();
}

void FileLeaseStore::maintain() {
  if (!own_ || own_->reservation || now_unix() < next_renew_) return;
  // Under the allocation lock: an expired lease may be reaped and re-created
  // by another daemon, and we must not extend their file.
  std::optional<DirLock> lock;
  try {
    lock.emplace(dir_ + "/.lock");
  } catch (const std::exception& e) {
    spdlog::warn("renewing lease {}: {}; retrying in 60 s", core::format_prefix(own_->subnet), e.what());
    ++status_.renew_failures;
    next_renew_ = now_unix() + 60;
    return;
  }
  const std::string path = path_of(own_->subnet);
  if (own_->expiry_unix <= now_unix()) {
    ++status_.renew_failures;
    next_renew_ = now_unix() + 60;
    spdlog::warn("lease {} expired before it could be renewed; not renewing it",
                 core::format_prefix(own_->subnet));
    return;
  }
  std::optional<core::LeaseValue> value;
  try {
    if (const auto file = read_small_file(path, kMaxLeaseFileBytes, Symlinks::kRefuse)) {
      value = core::parse_lease_value(file->text);
    }
  } catch (const FileInputError& e) {
    spdlog::warn("renewing lease {}: {}", path, e.what());
  }
  if (!value || value->public_ip != own_->public_ip) {
    // Gone or someone else's now: never overwrite (flannel's renewal did);
    // the watch reports the loss.
    ++status_.renew_failures;
    next_renew_ = now_unix() + 60;
    return;
  }
  const int64_t expiry = now_unix() + ttl_s_;
  const timespec times[2] = {{expiry, 0}, {expiry, 0}};
  if (utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) {
    spdlog::warn("renewing lease {}: {}; retrying in 60 s", path, std::strerror(errno));
    ++status_.renew_failures;
    next_renew_ = now_unix() + 60;
    return;
  }
  own_->expiry_unix = expiry;
  status_.own_expiry_unix = expiry;
  ++status_.renewals;
  next_renew_ = core::renew_time(expiry, ttl_s_, margin_s_);
  spdlog::debug("renewed lease {} until {}", core::format_prefix(own_->subnet), expiry);
}

}  // namespace udpring::io
