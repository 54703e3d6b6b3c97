#include "io/control/leases/etcd_lease_store.h"

#include <spdlog/spdlog.h>

#include <random>
#include <set>

namespace udpring::io {
namespace {

using Json = nlohmann::json;

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The end of etcd's prefix range: the prefix with its last byte + 1.
std::string range_end(std::string prefix) {
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

// Each bad key is reported once, however often it is listed or watched.
void warn_bad_key(const std::string& key, const char* why) {
  static std::mutex mu;
  static std::set<std::string> warned;
  std::lock_guard lock(mu);
  if (warned.insert(key).second) spdlog::warn("skipping etcd key {}: {}", key, why);
}

// A kv from the gateway as a lease; nullopt (after a warning) if it is not one.
std::optional<core::Lease> to_lease(const Json& kv) {
  const std::string key = EtcdClient::unb64(kv.value("key", Json()));
  const auto subnet = core::parse_lease_key(key);
  if (!subnet) {
    warn_bad_key(key, "not a.b.c.d-len");
    return std::nullopt;
  }
  const auto value = core::parse_lease_value(EtcdClient::unb64(kv.value("value", Json())));
  if (!value) {
    warn_bad_key(key, "value is not a lease (no PublicIP)");
    return std::nullopt;
  }
  core::Lease l;
  l.subnet = *subnet;
  l.public_ip = value->public_ip;
  l.backend_type = value->backend_type;
  l.store_lease = EtcdClient::int64(kv, "lease");
  l.reservation = l.store_lease == 0;
  l.key = key;
  // Kept across puts (renewals, reuse); a deleted and re-created key gets
  // a new one. Keys created in one txn share it (then the key decides).
  l.created = EtcdClient::int64(kv, "create_revision");
  return l;
}

}  // namespace

EtcdLeaseStore::EtcdLeaseStore(EtcdConfig cfg, std::string prefix, int64_t ttl_s, int64_t margin_s)
    : cfg_(std::move(cfg)),
      prefix_(std::move(prefix)),
      subnets_(core::subnets_prefix(prefix_)),
      ttl_s_(ttl_s),
      margin_s_(margin_s),
      client_(cfg_) {
  while (prefix_.size() > 1 && prefix_.back() == '/') prefix_.pop_back();
  if ((!cfg_.certfile.empty()) != (!cfg_.keyfile.empty())) {
    spdlog::warn("--etcd-certfile and --etcd-keyfile must both be set for TLS; using plain HTTP");
  }
}

EtcdLeaseStore::~EtcdLeaseStore() {
  updates_.stop();
  if (watcher_.joinable()) watcher_.join();
}

std::string EtcdLeaseStore::describe() const {
  std::string eps;
  for (const std::string& e : cfg_.endpoints) eps += (eps.empty() ? "" : ",") + e;
  return "etcd " + eps + " prefix " + prefix_;
}

std::string EtcdLeaseStore::read_config() {
  const std::string key = prefix_ + "/config";
  const Json r = client_.call("/v3/kv/range", {{"key", EtcdClient::b64(key)}});
  if (!r.contains("kvs") || r["kvs"].empty()) {
    throw EtcdError("flannel config not found in etcd at " + key +
                    " (write it with the v3 API: etcdctl put " + key + " '{\"Network\":...}')");
  }
  return EtcdClient::unb64(r["kvs"][0].value("value", Json()));
}

EtcdLeaseStore::Listing EtcdLeaseStore::list(EtcdClient& client) {
  const Json r = client.call("/v3/kv/range", {{"key", EtcdClient::b64(subnets_)},
                                             {"range_end", EtcdClient::b64(range_end(subnets_))}});
  Listing out;
  out.revision = EtcdClient::int64(r.value("header", Json::object()), "revision");
  for (const Json& kv : r.value("kvs", Json::array())) {
    if (auto l = to_lease(kv)) out.leases.push_back(*l);
  }
  return out;
}

int64_t EtcdLeaseStore::grant(int64_t ttl_s) {
  const Json r = client_.call("/v3/lease/grant", {{"TTL", std::to_string(ttl_s)}});
  const int64_t id = EtcdClient::int64(r, "ID");
  if (id == 0) throw EtcdError("etcd lease grant returned no ID: " + r.dump());
  return id;
}

void EtcdLeaseStore::revoke(int64_t id) {
  try {
    client_.call("/v3/lease/revoke", {{"ID", std::to_string(id)}});
  } catch (const EtcdError& e) {
    // Not fatal: an unrevoked lease just runs out its TTL.
    spdlog::warn("revoking etcd lease {:x}: {}", id, e.what());
  }
}

bool EtcdLeaseStore::txn_put(const std::string& key, const Json& compare, int64_t lease_id) {
  const Json put = {{"requestPut",
                     {{"key", EtcdClient::b64(key)},
                      {"value", EtcdClient::b64(core::format_lease_value(own_ip_))},
                      {"lease", std::to_string(lease_id)}}}};
  const Json r = client_.call("/v3/kv/txn", {{"compare", Json::array({compare})},
                                            {"success", Json::array({put})}});
  if (r.value("succeeded", false)) return true;
  // A txn that timed out on one endpoint may have been applied before the
  // client resent it to another, where the compare then fails: if the key
  // is on our new lease, it was ours all along (revoking it would delete it).
  return key_lease(key) == lease_id;
}

std::optional<int64_t> EtcdLeaseStore::key_lease(const std::string& key) {
  const Json r = client_.call("/v3/kv/range", {{"key", EtcdClient::b64(key)}});
  if (!r.contains("kvs") || r["kvs"].empty()) return std::nullopt;
  return EtcdClient::int64(r["kvs"][0], "lease");
}

core::Lease EtcdLeaseStore::acquire(const core::NetConfig& cfg, core::Be32 public_ip,
                                    const std::optional<core::Ipv4Prefix>& previous) {
  own_ip_ = public_ip;
  std::mt19937_64 rng(std::random_device{}());
  for (int attempt = 1; attempt <= core::kAcquireAttempts; ++attempt) {
    const Listing listing = list(client_);
    const core::AcquirePlan plan =
        core::plan_acquisition(cfg, public_ip, previous, listing.leases, rng());
    for (const core::Ipv4Prefix& stale : plan.remove) {
      spdlog::info("deleting our lease {}: it does not fit the config any more",
                   core::format_prefix(stale));
      client_.call("/v3/kv/deleterange", {{"key", EtcdClient::b64(core::lease_key(prefix_, stale))}});
    }
    const std::string key = core::lease_key(prefix_, plan.subnet);
    core::Lease l;
    switch (plan.kind) {
      case core::AcquirePlan::Kind::kExhausted:
        throw std::runtime_error("out of subnets: every /" + std::to_string(cfg.subnet_len) +
                                 " from " + core::format_ipv4(cfg.subnet_min) + " to " +
                                 core::format_ipv4(cfg.subnet_max) + " is leased in etcd");
      case core::AcquirePlan::Kind::kReuse:
        l = *plan.existing;
        if (!l.reservation) {
          const int64_t id = grant(ttl_s_);
          const Json same_lease = {{"target", "LEASE"}, {"key", EtcdClient::b64(key)},
                                   {"lease", std::to_string(l.store_lease)}, {"result", "EQUAL"}};
          if (!txn_put(key, same_lease, id)) {
            revoke(id);
            spdlog::info("lease {} changed while we reused it; retrying ({}/{})",
                         core::format_prefix(l.subnet), attempt, core::kAcquireAttempts);
            continue;
          }
          revoke(l.store_lease);  // the previous run's etcd lease: no orphan
          l.store_lease = id;
          l.expiry_unix = now_unix() + ttl_s_;
        }
        break;
      case core::AcquirePlan::Kind::kCreate: {
        const int64_t id = grant(ttl_s_);
        const Json absent = {{"target", "VERSION"}, {"key", EtcdClient::b64(key)},
                             {"version", "0"}, {"result", "EQUAL"}};
        if (!txn_put(key, absent, id)) {
          // flanneld exits here (its retry never matches this error).
          revoke(id);
          spdlog::info("lease {} was taken by another node first; retrying ({}/{})",
                       core::format_prefix(plan.subnet), attempt, core::kAcquireAttempts);
          continue;
        }
        l.subnet = plan.subnet;
        l.public_ip = public_ip;
        l.store_lease = id;
        l.expiry_unix = now_unix() + ttl_s_;
        break;
      }
    }
    spdlog::info("lease {} ({}) at {}, {}", core::format_prefix(l.subnet), plan.reason, key,
                 l.reservation ? "a reservation: never expires, never renewed"
                               : "etcd lease " + std::to_string(l.store_lease) + ", TTL " +
                                     std::to_string(ttl_s_) + " s");
    own_ = l;
    own_expiry_ = l.expiry_unix;
    next_renew_ = l.reservation ? 0 : core::renew_time(l.expiry_unix, ttl_s_, margin_s_);
    return l;
  }
  // Other nodes may be starting at the same moment; a later try may win.
  throw StoreUnavailable("no lease after " + std::to_string(core::kAcquireAttempts) +
                           " attempts: every pick was taken by another node first");
}

void EtcdLeaseStore::maintain() {
  if (!own_ || own_->reservation || now_unix() < next_renew_) return;
  const std::string key = core::lease_key(prefix_, own_->subnet);
  const int64_t retry = std::min<int64_t>(60, std::max<int64_t>(1, ttl_s_ / 4));
  try {
    if (pending_lease_ != 0) {
      // The last renewal's txn failed in transit: did it land?
      if (key_lease(key) == pending_lease_) {
        revoke(own_->store_lease);
        own_->store_lease = pending_lease_;
      } else {
        revoke(pending_lease_);
      }
      pending_lease_ = 0;
    }
    const int64_t id = grant(ttl_s_);
    const Json still_ours = {{"target", "LEASE"}, {"key", EtcdClient::b64(key)},
                             {"lease", std::to_string(own_->store_lease)}, {"result", "EQUAL"}};
    pending_lease_ = id;
    const bool moved = txn_put(key, still_ours, id);
    pending_lease_ = 0;
    if (!moved) {
      revoke(id);
      ++renew_failures_;
      next_renew_ = now_unix() + retry;
      spdlog::warn("not renewing {}: the key is no longer on our etcd lease", key);
      return;
    }
    revoke(own_->store_lease);
    own_->store_lease = id;
    own_->expiry_unix = now_unix() + ttl_s_;
    own_expiry_ = own_->expiry_unix;
    ++renewals_;
    next_renew_ = core::renew_time(own_->expiry_unix, ttl_s_, margin_s_);
    spdlog::debug("renewed {} on etcd lease {}", key, id);
  } catch (const EtcdError& e) {
    ++renew_failures_;
    next_renew_ = now_unix() + retry;
    spdlog::warn("renewing {}: {}; retrying in {} s", key, e.what(), retry);
  }
}

bool EtcdLeaseStore::wait_update(std::chrono::milliseconds timeout, core::LeaseUpdate& out) {
  out = {};
  if (!watching_) {
    // The snapshot comes from this thread, so the first routes are in place
    // before forwarding starts; the watch resumes right after its revision.
    Listing listing = list(client_);
    watching_ = true;
    watcher_ = std::thread([this, rev = listing.revision + 1, leases = listing.leases] {
      core::LeaseMap known;
      core::diff_leases(known, leases);
      watch_loop(rev, std::move(known));
    });
    out.reset = true;
    out.leases = std::move(listing.leases);
    return true;
  }
  return updates_.pop(timeout, out);
}

void EtcdLeaseStore::watch_loop(int64_t next_rev, core::LeaseMap known) {
  EtcdClient client(cfg_);
  auto backoff = std::chrono::milliseconds(100);
  std::string last_error;
  while (!updates_.stopped()) {
    bool relist = false;
    std::string error;
    try {
      const Json req = {{"create_request",
                         {{"key", EtcdClient::b64(subnets_)},
                          {"range_end", EtcdClient::b64(range_end(subnets_))},
                          {"start_revision", std::to_string(next_rev)}}}};
      client.stream("/v3/watch", req, [&](const Json& msg) {
        if (msg.contains("error")) {
          error = msg["error"].dump();
          return false;
        }
        const Json& r = msg.value("result", Json::object());
        if (EtcdClient::int64(r, "compact_revision") > 0) {
          spdlog::warn("etcd compacted past revision {}; re-listing leases", next_rev);
          relist = true;
          return false;
        }
        if (r.value("canceled", false)) {
          error = "watch canceled: " + r.value("cancel_reason", std::string());
          return false;
        }
        if (r.value("created", false)) {
          if (!connected_.exchange(true) && !last_error.empty()) {
            spdlog::info("etcd watch re-established at revision {}", next_rev);
          }
          backoff = std::chrono::milliseconds(100);
          last_error.clear();
        }
        core::LeaseUpdate u;
        for (const Json& ev : r.value("events", Json::array())) {
          const Json& kv = ev.value("kv", Json::object());
          next_rev = std::max(next_rev, EtcdClient::int64(kv, "mod_revision") + 1);
          const std::string key = EtcdClient::unb64(kv.value("key", Json()));
          std::optional<core::Lease> put;
          if (ev.value("type", std::string("PUT")) != "DELETE") put = to_lease(kv);
          if (put) {
            u.events.push_back({core::LeaseEvent::Kind::kAdded, *put});
          } else if (const auto it = known.find(key); it != known.end()) {
            // Deleted, or overwritten with something that is not a lease.
            u.events.push_back({core::LeaseEvent::Kind::kRemoved, it->second});
          } else {
            continue;  // a key we never took for a lease: nothing to undo
          }
          core::apply_event(known, u.events.back());
        }
        if (!u.events.empty()) updates_.push(std::move(u));
        return !updates_.stopped();
      }, updates_.stop_flag());
      if (!error.empty()) {
        client.reset_auth();  // "permission denied" from an expired token looks like this
        throw EtcdError(error);
      }
      if (relist) {
        ++relists_;
        Listing listing = list(client);
        core::LeaseUpdate u;
        u.events = core::diff_leases(known, listing.leases);
        if (!u.events.empty()) updates_.push(std::move(u));
        next_rev = listing.revision + 1;
        continue;
      }
    } catch (const std::exception& e) {
      // Anything (etcd, a malformed answer, memory) ends this stream only.
      if (updates_.stopped()) break;
      connected_ = false;
      ++reconnects_;
      if (e.what() != last_error) {
        spdlog::warn("etcd watch: {}; reconnecting (backoff 100 ms to 5 s)", e.what());
        last_error = e.what();
      }
      updates_.sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

core::LeaseStoreStatus EtcdLeaseStore::status() const {
  core::LeaseStoreStatus s;
  s.own_expiry_unix = own_expiry_.load();
  s.renewals = renewals_.load();
  s.renew_failures = renew_failures_.load();
  s.watch_reconnects = reconnects_.load();
  s.relists = relists_.load();
  s.watch_connected = connected_.load();
  return s;
}

}  // namespace udpring::io
