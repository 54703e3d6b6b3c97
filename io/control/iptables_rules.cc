#include "io/control/iptables_rules.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <set>
#include <stdexcept>
#include <system_error>

#include "core/unique_fd.h"
#include "io/control/stop_signals.h"

extern char** environ;

namespace udpring::io {
namespace {

// flannel's comments; kube-proxy's masquerade mark (KUBE-MARK-MASQ sets it).
constexpr const char* kMasqComment = "-m comment --comment \"flanneld masq\"";
constexpr const char* kForwardComment = "-m comment --comment \"flanneld forward\"";
constexpr const char* kKubeProxyMark = "0x4000/0x4000";

// iptables-restore may wait for the xtables lock (legacy backend, held by
// kube-proxy at times); a child that outlives this is killed.
constexpr auto kChildTimeout = std::chrono::seconds(30);
// How often a child's wait looks for a stop signal.
constexpr auto kStopCheck = std::chrono::milliseconds(100);

void require_nonzero(const core::Ipv4Prefix& p, const char* what) {
  if (p.length == 0) {
    throw std::invalid_argument(std::string(what) + " " + core::format_prefix(p) +
                                ": a /0 prefix cannot be written as an iptables match");
  }
}

// The daemon may run with a PATH that lacks the sbin directories (a minimal
// systemd unit or container), so look there too.
std::string find_program(const std::string& name) {
  std::string dirs;
  if (const char* path = std::getenv("PATH")) dirs = path;
  dirs += ":/usr/sbin:/sbin:/usr/local/sbin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string dir = dirs.substr(start, end - start);
    start = end + 1;
    if (dir.empty()) continue;
    const std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error(name + " not found in PATH, /usr/sbin or /sbin (install iptables)");
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up as above) with `input` on stdin and collects stdout
// and stderr; no shell is involved. posix_spawn is safe in a threaded
// process, and the child inherits the calling thread's network namespace.
// stdin is a socketpair, not a pipe, so that send(MSG_NOSIGNAL) cannot raise
// SIGPIPE in the daemon when the child exits without reading it all.
// With `stop`, a stop signal arriving meanwhile kills the child within
// kStopCheck and throws IptablesStopped.
RunResult run_program(const std::vector<std::string>& argv, std::string_view input,
                      const sigset_t* stop = nullptr) {
  const std::string path = find_program(argv[0]);
  int in_pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0) {
    throw std::system_error(errno, std::generic_category(), "socketpair for " + argv[0]);
  }
  core::UniqueFd in_ours(in_pair[0]), in_child(in_pair[1]);
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  core::UniqueFd out_ours(out_pipe[0]), out_child(out_pipe[1]);
  if (pipe2(err_pipe, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  core::UniqueFd err_ours(err_pipe[0]), err_child(err_pipe[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_child.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out_child.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_child.get(), 2);
  // The daemon blocks SIGINT/SIGTERM/SIGUSR1 in every thread for its
  // sigtimedwait; the child must not inherit that mask or any handlers.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, path.c_str(), &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn " + path);
  in_child.reset();
  out_child.reset();
  err_child.reset();

  set_nonblocking(in_ours.get());
  set_nonblocking(out_ours.get());
  set_nonblocking(err_ours.get());
  RunResult result;
  size_t written = 0;
  if (input.empty()) in_ours.reset();
  const auto deadline = std::chrono::steady_clock::now() + kChildTimeout;
  bool timed_out = false;
  bool stopped = false;
  while (out_ours || err_ours) {
    pollfd pfds[3];
    nfds_t n = 0;
    core::UniqueFd* owners[3];
    auto add = [&](core::UniqueFd& fd, short events) {
      if (!fd) return;
      pfds[n] = {fd.get(), events, 0};
      owners[n++] = &fd;
    };
    add(in_ours, POLLOUT);
    add(out_ours, POLLIN);
    add(err_ours, POLLIN);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    if (stop && stop_signal_pending(*stop)) {
      stopped = true;
      break;
    }
    if (stop) left = std::min<std::chrono::milliseconds>(left, kStopCheck);
    if (poll(pfds, n, static_cast<int>(left.count())) < 0) {
      if (errno == EINTR) continue;
      timed_out = true;  // cannot happen with valid fds; treat as a hang
      break;
    }
    for (nfds_t i = 0; i < n; ++i) {
      if (pfds[i].revents == 0) continue;
      core::UniqueFd& fd = *owners[i];
      if (&fd == &in_ours) {
        const ssize_t w = send(fd.get(), input.data() + written, input.size() - written, MSG_NOSIGNAL);
        if (w > 0) written += static_cast<size_t>(w);
        // Done, or the child closed its stdin (EPIPE): either way, EOF it.
        if (written == input.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) fd.reset();
        continue;
      }
      char buf[4096];
      const ssize_t r = read(fd.get(), buf, sizeof buf);
      if (r > 0) {
        (&fd == &out_ours ? result.out : result.err).append(buf, static_cast<size_t>(r));
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        fd.reset();
      }
    }
  }
  if (timed_out || stopped) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "waitpid " + argv[0]);
  }
  if (stopped) throw IptablesStopped(argv[0] + " stopped: a stop signal arrived while it ran");
  if (timed_out) {
    throw std::runtime_error(argv[0] + " did not finish within " +
                             std::to_string(kChildTimeout.count()) + " s; killed");
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string where(const RuleSet& set) { return set.table + "/" + set.chain; }

long count_jumps(const RuleSet& set, const ChainRules& saved) {
  const auto parent = saved.find(set.parent);
  return parent == saved.end() ? 0 : std::count(parent->second.begin(), parent->second.end(), set.jump);
}

}  // namespace

RuleSet masq_rules(const core::Ipv4Prefix& network, const core::Ipv4Prefix& subnet, bool random_fully) {
  require_nonzero(network, "network");
  require_nonzero(subnet, "subnet");
  const std::string n = core::format_prefix(network);
  const std::string s = core::format_prefix(subnet);
  const std::string c = kMasqComment;
  const std::string masq = random_fully ? " -j MASQUERADE --random-fully" : " -j MASQUERADE";
  // flannel's order (pkg/trafficmngr/iptables masqRules, v0.21.0+). The
  // RETURNs must precede the MASQUERADEs: first match wins.
  return RuleSet{
      "nat",
      "FLANNEL-POSTRTG",
      "POSTROUTING",
      c + " -j FLANNEL-POSTRTG",
      {
          // Already marked by kube-proxy, which masquerades it itself; a
          // second NAT breaks on some kernels.
          std::string("-m mark --mark ") + kKubeProxyMark + " " + c + " -j RETURN",
          // Pod to pod, in either direction: no NAT inside the overlay.
          "-s " + s + " -d " + n + " " + c + " -j RETURN",
          "-s " + n + " -d " + s + " " + c + " -j RETURN",
          // From outside to one of this node's pods: keep the client address.
          "! -s " + n + " -d " + s + " " + c + " -j RETURN",
          // Pods to the outside world, except multicast.
          "-s " + n + " ! -d 224.0.0.0/4 " + c + masq,
          // The host (or another network) to remote pods.
          "! -s " + n + " -d " + n + " " + c + masq,
      },
  };
}

RuleSet forward_rules(const core::Ipv4Prefix& network) {
  require_nonzero(network, "network");
  const std::string n = core::format_prefix(network);
  const std::string c = kForwardComment;
  // A FORWARD policy of DROP (Docker sets one) would otherwise drop pod
  // traffic between the TUN and the bridge.
  return RuleSet{
      "filter",
      "FLANNEL-FWD",
      "FORWARD",
      c + " -j FLANNEL-FWD",
      {
          "-s " + n + " " + c + " -j ACCEPT",
          "-d " + n + " " + c + " -j ACCEPT",
      },
  };
}

bool iptables_supports_random_fully() {
  static const bool supported = [] {
    try {
      const RunResult r = run_program({"iptables", "-j", "MASQUERADE", "--help"}, "");
      return r.out.find("--random-fully") != std::string::npos;
    } catch (const std::exception& e) {
      spdlog::warn("cannot probe iptables for --random-fully: {}", e.what());
      return false;
    }
  }();
  return supported;
}

ChainRules parse_iptables_save(std::string_view text) {
  ChainRules chains;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.starts_with(':')) {
      // ":NAME POLICY [packets:bytes]"
      chains[std::string(line.substr(1, line.find(' ') - 1))];
    } else if (line.starts_with("-A ")) {
      line.remove_prefix(3);
      const size_t space = line.find(' ');
      const std::string chain(line.substr(0, space));
      chains[chain].emplace_back(space == std::string_view::npos ? "" : line.substr(space + 1));
    }
  }
  return chains;
}

std::optional<std::string> find_drift(const RuleSet& set, const ChainRules& saved) {
  const auto it = saved.find(set.chain);
  if (it == saved.end()) return "chain " + where(set) + " is missing";
  const std::vector<std::string>& have = it->second;

  const long jumps = count_jumps(set, saved);
  if (jumps == 0) return "missing jump \"-A " + set.parent + " " + set.jump + "\" in table " + set.table;
  if (jumps > 1) {
    return "jump \"-A " + set.parent + " " + set.jump + "\" appears " + std::to_string(jumps) +
           " times in table " + set.table;
  }

  for (const auto& rule : set.rules) {
    if (std::find(have.begin(), have.end(), rule) == have.end()) {
      return "missing rule \"-A " + set.chain + " " + rule + "\" in table " + set.table;
    }
  }
  for (size_t i = 0; i < have.size(); ++i) {
    if (i >= set.rules.size()) {
      return "unexpected rule \"-A " + set.chain + " " + have[i] + "\" in table " + set.table;
    }
    if (have[i] != set.rules[i]) {
      return "rule " + std::to_string(i + 1) + " of " + where(set) + " is \"" + have[i] + "\", expected \"" +
             set.rules[i] + "\"";
    }
  }
  return std::nullopt;
}

std::string restore_script(const RuleSet& set, const ChainRules& saved) {
  std::string s = "*" + set.table + "\n";
  // Under --noflush this line creates the chain, or flushes it if it exists.
  s += ":" + set.chain + " - [0:0]\n";
  for (const auto& rule : set.rules) s += "-A " + set.chain + " " + rule + "\n";
  const long jumps = count_jumps(set, saved);
  // Appended like flannel @H (not inserted); surplus copies (another
  // daemon's, or an old flannel's -I) go, one -D per copy.
  if (jumps == 0) s += "-A " + set.parent + " " + set.jump + "\n";
  for (long i = jumps; i > 1; --i) s += "-D " + set.parent + " " + set.jump + "\n";
  s += "COMMIT\n";
  return s;
}

IptablesManager::IptablesManager(std::vector<RuleSet> sets, const sigset_t* stop_signals)
    : sets_(std::move(sets)), stop_signals_(stop_signals) {
  for (const auto& set : sets_) {
    if (set.table.empty() || set.chain.empty() || set.parent.empty() || set.jump.empty()) {
      throw std::invalid_argument("IptablesManager: a rule set needs a table, chain, parent and jump");
    }
  }
}

std::map<std::string, ChainRules> IptablesManager::save_tables() const {
  std::set<std::string> tables;
  for (const auto& set : sets_) tables.insert(set.table);
  std::map<std::string, ChainRules> saved;
  for (const auto& table : tables) {
    const RunResult r = run_program({"iptables-save", "-t", table}, "", stop_signals_);
    if (r.exit_code != 0) {
      throw std::runtime_error("iptables-save -t " + table + " failed (exit " + std::to_string(r.exit_code) +
                               "): " + trimmed(r.err));
    }
    saved[table] = parse_iptables_save(r.out);
  }
  return saved;
}

std::optional<std::string> IptablesManager::drift() const {
  const auto saved = save_tables();
  for (const auto& set : sets_) {
    if (auto d = find_drift(set, saved.at(set.table))) return d;
  }
  return std::nullopt;
}

void IptablesManager::apply_locked() {
  if (sets_.empty()) return;
  const auto saved = save_tables();
  std::string script;
  for (const auto& set : sets_) script += restore_script(set, saved.at(set.table));
  // --wait: queue behind kube-proxy for the xtables lock (legacy backend;
  // nf_tables ignores it), as flannel does.
  const RunResult r = run_program({"iptables-restore", "--noflush", "--wait=10"}, script, stop_signals_);
  if (r.exit_code != 0) {
    throw std::runtime_error("iptables-restore failed (exit " + std::to_string(r.exit_code) +
                             "): " + trimmed(r.err));
  }
  for (const auto& set : sets_) {
    spdlog::info("iptables: {} holds {} rules, entered from {}", where(set), set.rules.size(), set.parent);
  }
}

void IptablesManager::apply() {
  std::lock_guard lock(mutex_);
  apply_locked();
}

bool IptablesManager::check() {
  std::lock_guard lock(mutex_);
  return !drift();
}

bool IptablesManager::resync() {
  std::lock_guard lock(mutex_);
  const auto d = drift();
  if (!d) return false;
  spdlog::warn("iptables: {}; rebuilding the flannel rules", *d);
  apply_locked();
  rebuilds_.store(rebuilds_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return true;
}

}  // namespace udpring::io
