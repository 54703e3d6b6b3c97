#include "io/control/leases/etcd_lease_store.h"

#include <spdlog/spdlog.h>

#include <random>
#include <set>

#include "core/base64.h"
#include "io/control/leases/checked_json.h"
#include "io/control/leases/etcd_messages.h"

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

constexpr auto kSource = core::InputSource::kEtcd;

// A base64 member of a kv (a key or a value): the bytes.
std::string unb64(const Json& kv, std::string_view member, const std::string& where) {
  auto bytes = core::base64_decode(string_member(kv, member, where));
  if (!bytes) throw StoreInputError(where + ": a kv's \"" + std::string(member) + "\" is not base64");
  return *bytes;
}

}  // namespace

EtcdLeaseStore::EtcdLeaseStore(EtcdConfig cfg, std::string prefix, int64_t ttl_s, int64_t margin_s,
                               StoreContext ctx)
    : cfg_(std::move(cfg)),
      prefix_(std::move(prefix)),
      subnets_(core::subnets_prefix(prefix_)),
      ttl_s_(ttl_s),
      margin_s_(margin_s),
      ctx_(ctx),
      client_(cfg_, nullptr, ctx.stop_signals) {
  while (prefix_.size() > 1 && prefix_.back() == '/') prefix_.pop_back();
  if ((!cfg_.certfile.empty()) != (!cfg_.keyfile.empty())) {
    spdlog::warn("--etcd-certfile and --etcd-keyfile must both be set for TLS; using plain HTTP");
  }
}

EtcdLeaseStore::~EtcdLeaseStore() {
  updates_.stop();  // also ends both threads' requests in flight
  if (watcher_.joinable()) watcher_.join();
  if (renewer_.joinable()) renewer_.join();
}

void EtcdLeaseStore::count_input_error() const {
  if (ctx_.input_errors) ctx_.input_errors->count(kSource);
}

std::string EtcdLeaseStore::describe() const {
  std::string eps;
  for (const std::string& e : cfg_.endpoints) eps += (eps.empty() ? "" : ",") + e;
  return "etcd " + eps + " prefix " + prefix_;
}

std::string EtcdLeaseStore::read_config() {
  const std::string key = prefix_ + "/config";
  // Not counted here: the daemon counts a config it cannot use as "config".
  return counting_input_errors(nullptr, kSource, describe(), [&] {
    const Json r = client_.call("/v3/kv/range", {{"key", EtcdClient::b64(key)}});
    const std::string where = "etcd " + client_.endpoint() + " " + key;
    const Json& kvs = array_member(r, "kvs", where);
    if (kvs.empty()) {
      throw EtcdError("flannel config not found in etcd at " + key +
                      " (write it with the v3 API: etcdctl put " + key + " '{\"Network\":...}')");
    }
    return unb64(object_item(kvs[0], "a kv", where), "value", where);
  });
}

EtcdListing EtcdLeaseStore::list(EtcdClient& client) {
  const Json r = client.call("/v3/kv/range", {{"key", EtcdClient::b64(subnets_)},
                                             {"range_end", EtcdClient::b64(range_end(subnets_))}});
  return parse_listing(r, "etcd " + client.endpoint() + "/v3/kv/range " + subnets_, ctx_.input_errors);
}

int64_t EtcdLeaseStore::grant(EtcdClient& client, int64_t ttl_s) {
  const Json r = client.call("/v3/lease/grant", {{"TTL", std::to_string(ttl_s)}});
  const std::string where = "etcd " + client.endpoint() + "/v3/lease/grant";
  const int64_t id = int64_member(r, "ID", where);
  if (id == 0) throw StoreInputError(where + ": no lease ID in " + excerpt(r));
  return id;
}

void EtcdLeaseStore::revoke(EtcdClient& client, int64_t id) {
  try {
    client.call("/v3/lease/revoke", {{"ID", std::to_string(id)}});
  } catch (const StoreUnavailable& e) {
    // Not fatal: an unrevoked lease just runs out its TTL.
    if (dynamic_cast<const StoreInputError*>(&e)) count_input_error();
    spdlog::warn("revoking etcd lease {:x}: {}", id, e.what());
  }
}

bool EtcdLeaseStore::txn_put(EtcdClient& client, const std::string& key, const Json& compare,
                             int64_t lease_id) {
  const Json put = {{"requestPut",
                     {{"key", EtcdClient::b64(key)},
                      {"value", EtcdClient::b64(core::format_lease_value(own_ip_))},
                      {"lease", std::to_string(lease_id)}}}};
  const Json r = client.call("/v3/kv/txn", {{"compare", Json::array({compare})},
                                           {"success", Json::array({put})}});
  if (bool_member(r, "succeeded", false, "etcd " + client.endpoint() + "/v3/kv/txn")) return true;
  // A txn that timed out on one endpoint may have been applied before the
  // client resent it to another, where the compare then fails: if the key
  // is on our new lease, it was ours all along (revoking it would delete it).
  return key_lease(client, key) == lease_id;
}

std::optional<int64_t> EtcdLeaseStore::key_lease(EtcdClient& client, const std::string& key) {
  const Json r = client.call("/v3/kv/range", {{"key", EtcdClient::b64(key)}});
  const std::string where = "etcd " + client.endpoint() + "/v3/kv/range " + core::printable(key);
  const Json& kvs = array_member(r, "kvs", where);
  if (kvs.empty()) return std::nullopt;
  return int64_member(object_item(kvs[0], "a kv", where), "lease", where);
}

core::Lease EtcdLeaseStore::acquire(const core::NetConfig& cfg, core::Be32 public_ip,
                                    const std::optional<core::Ipv4Prefix>& previous) {
  return counting_input_errors(ctx_.input_errors, kSource, describe(),
                               [&] { return acquire_once(cfg, public_ip, previous); });
}

core::Lease EtcdLeaseStore::acquire_once(const core::NetConfig& cfg, core::Be32 public_ip,
                                         const std::optional<core::Ipv4Prefix>& previous) {
  own_ip_ = public_ip;
  std::mt19937_64 rng(std::random_device{}());
  for (int attempt = 1; attempt <= core::kAcquireAttempts; ++attempt) {
    const EtcdListing listing = list(client_);
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
          const int64_t id = grant(client_, ttl_s_);
          const Json same_lease = {{"target", "LEASE"}, {"key", EtcdClient::b64(key)},
                                   {"lease", std::to_string(l.store_lease)}, {"result", "EQUAL"}};
          if (!txn_put(client_, key, same_lease, id)) {
            revoke(client_, id);
            spdlog::info("lease {} changed while we reused it; retrying ({}/{})",
                         core::format_prefix(l.subnet), attempt, core::kAcquireAttempts);
            continue;
          }
          revoke(client_, l.store_lease);  // the previous run's etcd lease: no orphan
          l.store_lease = id;
          l.expiry_unix = now_unix() + ttl_s_;
        }
        break;
      case core::AcquirePlan::Kind::kCreate: {
        const int64_t id = grant(client_, ttl_s_);
        const Json absent = {{"target", "VERSION"}, {"key", EtcdClient::b64(key)},
                             {"version", "0"}, {"result", "EQUAL"}};
        if (!txn_put(client_, key, absent, id)) {
          // flanneld exits here (its retry never matches this error).
          revoke(client_, id);
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
  if (renewer_.joinable() || !own_ || own_->reservation) return;
  renewer_ = std::thread([this] { renew_loop(); });
}

void EtcdLeaseStore::renew_loop() {
  // Its own client (one per thread), whose requests end when the store stops.
  EtcdClient client(cfg_, &updates_.stop_flag());
  while (!updates_.stopped()) {
    const int64_t wait_s = next_renew_ - now_unix();
    if (wait_s > 0) {
      // In steps, so that a jump of the wall clock is noticed within a minute.
      updates_.sleep_for(std::chrono::seconds(std::min<int64_t>(wait_s, 60)));
      continue;
    }
    renew(client);
  }
}

void EtcdLeaseStore::renew(EtcdClient& client) {
  const std::string key = core::lease_key(prefix_, own_->subnet);
  const int64_t retry = std::min<int64_t>(60, std::max<int64_t>(1, ttl_s_ / 4));
  try {
    counting_input_errors(ctx_.input_errors, kSource, describe(), [&] {
      if (pending_lease_ != 0) {
        // The last renewal's txn failed in transit: did it land?
        if (key_lease(client, key) == pending_lease_) {
          revoke(client, own_->store_lease);
          own_->store_lease = pending_lease_;
        } else {
          revoke(client, pending_lease_);
        }
        pending_lease_ = 0;
      }
      const int64_t id = grant(client, ttl_s_);
      const Json still_ours = {{"target", "LEASE"}, {"key", EtcdClient::b64(key)},
                               {"lease", std::to_string(own_->store_lease)}, {"result", "EQUAL"}};
      pending_lease_ = id;
      const bool moved = txn_put(client, key, still_ours, id);
      pending_lease_ = 0;
      if (!moved) {
        revoke(client, id);
        ++renew_failures_;
        next_renew_ = now_unix() + retry;
        spdlog::warn("not renewing {}: the key is no longer on our etcd lease", key);
        return;
      }
      revoke(client, own_->store_lease);
      own_->store_lease = id;
      own_->expiry_unix = now_unix() + ttl_s_;
      own_expiry_ = own_->expiry_unix;
      ++renewals_;
      next_renew_ = core::renew_time(own_->expiry_unix, ttl_s_, margin_s_);
      spdlog::debug("renewed {} on etcd lease {}", key, id);
    });
  } catch (const StoreUnavailable& e) {
    if (updates_.stopped()) return;  // ended by the stop, not by etcd
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
    EtcdListing listing = counting_input_errors(ctx_.input_errors, kSource, describe(),
                                            [&] { return list(client_); });
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
      const std::string where = "etcd " + client.endpoint() + "/v3/watch";
      client.stream("/v3/watch", req, [&](const Json& msg) {
        const int64_t from = next_rev;
        WatchMessage m = parse_watch_message(msg, known, next_rev, where, ctx_.input_errors);
        switch (m.kind) {
          case WatchMessage::Kind::kError:
            error = m.error;
            return false;
          case WatchMessage::Kind::kCompacted:
            spdlog::warn("etcd compacted past revision {}; re-listing leases", from);
            relist = true;
            return false;
          case WatchMessage::Kind::kCanceled:
            error = "watch canceled: " + m.error;
            return false;
          case WatchMessage::Kind::kEvents:
            break;
        }
        if (m.created) {
          if (!connected_.exchange(true) && !last_error.empty()) {
            spdlog::info("etcd watch re-established at revision {}", from);
          }
          backoff = std::chrono::milliseconds(100);
          last_error.clear();
        }
        if (!m.events.empty()) {
          core::LeaseUpdate u;
          u.events = std::move(m.events);
          updates_.push(std::move(u));
        }
        return !updates_.stopped();
      }, updates_.stop_flag());
      if (!error.empty()) {
        client.reset_auth();  // "permission denied" from an expired token looks like this
        throw EtcdError(error);
      }
      if (relist) {
        ++relists_;
        EtcdListing listing = list(client);
        core::LeaseUpdate u;
        u.events = core::diff_leases(known, listing.leases);
        if (!u.events.empty()) updates_.push(std::move(u));
        next_rev = listing.revision + 1;
        continue;
      }
    } catch (const std::exception& e) {
      // Anything (etcd, a malformed answer, memory) ends this stream only.
      if (updates_.stopped()) break;
      const bool input = dynamic_cast<const StoreInputError*>(&e) ||
                         dynamic_cast<const nlohmann::json::exception*>(&e);
      if (input) count_input_error();
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
