#pragma once
// flannel's iptables rules (--ip-masq and the FORWARD accepts), installed with
// iptables-restore and kept in place by a periodic check.
//
// Each RuleSet owns one user chain outright (FLANNEL-POSTRTG in nat,
// FLANNEL-FWD in filter) plus a single jump to it from a built-in chain.
// Installing declares the chain in an `iptables-restore --noflush` input,
// which creates it if absent and flushes it if present (seen on iptables
// 1.8.9 nf_tables; legacy iptables-restore.c flushes an existing user chain
// on its ":CHAIN" line too), then appends the rules in order. So a rebuild
// keeps flannel's order and also drops stale rules of a previous network or
// subnet, which flannel has to delete one by one.
//
// Checking parses one `iptables-save -t TABLE` per table and compares text:
// the rules here are spelled exactly as iptables-save normalizes them. That is
// one fork per table per check, not flannel's one `iptables -C` per rule.
//
// Rules are left in place on exit, as flannel does (a restart keeps NAT).

#include <signal.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/ipv4_addr.h"

namespace udpring::io {

/// One owned chain, its rules in order, and the jump that enters it.
struct RuleSet {
  std::string table;   // "nat" or "filter"
  std::string chain;   // the chain this set owns outright, e.g. "FLANNEL-POSTRTG"
  std::string parent;  // the built-in chain holding the jump, e.g. "POSTROUTING"
  std::string jump;    // the parent's rule spec (after "-A <parent> "), e.g.
                       // `-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`
  std::vector<std::string> rules;  // specs exactly as iptables-save prints them after "-A <chain> "
};

/// flannel's masquerade rules (v0.21.0 and later; docs/flannel-compat.md):
/// six rules in nat/FLANNEL-POSTRTG, entered from POSTROUTING, each with the
/// comment "flanneld masq". `random_fully` adds --random-fully to the two
/// MASQUERADE rules (pass iptables_supports_random_fully() unless
/// --ip-masq-fully-random-disable). Throws std::invalid_argument for a /0
/// prefix: iptables rejects `! -s 0.0.0.0/0` and save omits `-s 0.0.0.0/0`.
RuleSet masq_rules(const core::Ipv4Prefix& network, const core::Ipv4Prefix& subnet, bool random_fully);

/// flannel's forward accepts: two rules in filter/FLANNEL-FWD, entered from
/// FORWARD, comment "flanneld forward". Throws std::invalid_argument for /0.
RuleSet forward_rules(const core::Ipv4Prefix& network);

/// Whether this iptables knows MASQUERADE --random-fully (iptables 1.6.2 and
/// kernel 3.13 or later). Probed once per process from the help text of
/// `iptables -j MASQUERADE --help`, which reads no kernel state; false when
/// iptables cannot be run.
bool iptables_supports_random_fully();

/// An iptables child killed because the daemon was told to stop.
struct IptablesStopped : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Rules of one table as `iptables-save -t TABLE` prints them: chain name →
/// rule specs in order (the text after "-A <chain> "). Declared chains with
/// no rules map to an empty list, so a missing key means a missing chain.
using ChainRules = std::map<std::string, std::vector<std::string>>;

/// Parses the output of `iptables-save -t TABLE` (one table).
ChainRules parse_iptables_save(std::string_view text);

/// What differs between `set` and its table as saved, as one human-readable
/// line naming the first offending rule; nullopt when the chain holds exactly
/// set.rules in order and the parent holds the jump exactly once.
std::optional<std::string> find_drift(const RuleSet& set, const ChainRules& saved);

/// The `iptables-restore --noflush` input that rebuilds `set` over `saved`:
/// declares (creates or flushes) the chain, appends the rules, and appends
/// the jump only if the parent lacks it, or deletes surplus copies of it.
std::string restore_script(const RuleSet& set, const ChainRules& saved);

/// Installs and keeps rule sets in the current thread's network namespace
/// (children inherit the calling thread's namespace). Thread-safe: one
/// mutex serializes apply, check and resync, as flannel's does.
class IptablesManager {
 public:
  /// With `stop_signals` (which must outlive the manager), every iptables
  /// child is killed within 100 ms of one of them arriving (pending, as the
  /// daemon blocks them), and the call throws IptablesStopped.
  explicit IptablesManager(std::vector<RuleSet> sets, const sigset_t* stop_signals = nullptr);
  IptablesManager(const IptablesManager&) = delete;
  IptablesManager& operator=(const IptablesManager&) = delete;

  /// Installs every set with one iptables-restore run. Throws
  /// std::runtime_error carrying iptables' stderr on failure (each table's
  /// COMMIT is atomic, so a failed table is left as it was).
  void apply();

  /// True if every set is installed exactly (see find_drift). Throws
  /// std::runtime_error if iptables-save fails.
  bool check();

  /// check(); on drift logs a warning naming it and re-applies every set.
  /// Returns true if it rebuilt. Throws as apply() does.
  bool resync();

  /// Rebuilds done by resync() (apply() does not count).
  uint64_t rebuilds() const noexcept { return rebuilds_.load(std::memory_order_relaxed); }

  const std::vector<RuleSet>& sets() const noexcept { return sets_; }

 private:
  std::map<std::string, ChainRules> save_tables() const;
  std::optional<std::string> drift() const;
  void apply_locked();

  const std::vector<RuleSet> sets_;
  const sigset_t* const stop_signals_;
  std::mutex mutex_;  // serializes the save → restore sequences
  // A metrics counter: written under mutex_, read anywhere; relaxed because
  // nothing else is published through it.
  std::atomic<uint64_t> rebuilds_{0};
};

}  // namespace udpring::io
