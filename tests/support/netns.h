#pragma once
// Integration-test plumbing: uniquely named network namespaces that are always
// deleted, threads that run inside a namespace, child processes whose output
// goes to a file, and the two-node/two-pod topology of the forwarding tests.
//
//   pod p1 (10.50.1.2/24)                           pod p2 (10.50.2.2/24)
//      | eth0                                             | eth0
//      | vp 10.50.1.1/24                                  | vp 10.50.2.1/24
//   node n1 [flannel0 10.50.1.0/32] --u0--------u0-- node n2 [flannel0 10.50.2.0/32]
//            192.168.77.1/24   (underlay veth)   192.168.77.2/24
//
// Network 10.50.0.0/16; pod MTU 1472 as flannel's CNI would set from subnet.env.

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace udpring::test {

/// Runs a shell command; returns its exit status (-1 if it could not run).
int sh(const std::string& cmd);
/// Runs a shell command and throws std::runtime_error (with the command) on failure.
void sh_ok(const std::string& cmd);
/// Runs a shell command and returns its stdout.
std::string sh_out(const std::string& cmd);

/// "" when integration tests can run here, else the reason (not root, no TUN).
std::string integration_unavailable();

/// Skips on a developer machine, fails under CI=true (CI must never pass on
/// skipped integration tests).
#define UDPRING_REQUIRE_INTEGRATION()                                      \
  do {                                                                     \
    const std::string why_ = ::udpring::test::integration_unavailable();   \
    if (!why_.empty()) {                                                   \
      const char* ci_ = std::getenv("CI");                                 \
      if (ci_ && std::string(ci_) == "true") FAIL() << why_;               \
      GTEST_SKIP() << why_;                                                \
    }                                                                      \
  } while (0)

/// A network namespace that exists for the object's lifetime. Processes still
/// inside it are killed before it is deleted.
class Netns {
 public:
  explicit Netns(std::string name);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;
  const std::string& name() const { return name_; }
  /// `ip netns exec NAME ` prefix for shell commands.
  std::string exec() const { return "ip netns exec " + name_ + " "; }

 private:
  std::string name_;
};

/// Runs `fn` on a new thread that has joined namespace `ns` (setns affects
/// only the calling thread). Returns when fn returns; rethrows its exception.
void run_in_netns(const std::string& ns, const std::function<void()>& fn);

/// A child process started with `ip netns exec`, stdout+stderr to a log file.
/// Stopped with SIGTERM (then SIGKILL) on destruction.
class Process {
 public:
  Process(const std::string& ns, std::vector<std::string> argv, const std::string& log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  /// Sends SIGTERM, waits up to `timeout_ms`; returns the exit code, or -1 if
  /// it had to be killed.
  int stop(int timeout_ms = 2000);
  /// Waits up to `timeout_ms` for the process to exit by itself; returns its
  /// exit code, or nullopt if it is still running.
  std::optional<int> wait_exit(int timeout_ms);
  std::string log() const;
  /// Waits until the log contains `text`; false after `timeout_ms`.
  bool wait_for_log(const std::string& text, int timeout_ms);

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  bool reaped_ = false;
  std::string log_path_;
};

/// Udp RcvbufErrors in namespace `ns`: the datagrams the kernel dropped
/// because a socket's receive buffer was full (so no daemon saw them to
/// count them); -1 if it cannot be read.
long long udp_rcvbuf_errors(const Netns& ns);

/// A drop counter of device `dev` in namespace `ns` (`stat` is rx_dropped or
/// tx_dropped, a file of /sys/class/net/DEV/statistics); -1 if it cannot be
/// read. A veth counts what it could not hand to its peer on either side:
/// the receiver's rx_dropped when the peer's backlog is full, the sender's
/// tx_dropped when the peer's NAPI ring (with GRO on) is full.
long long link_dropped(const Netns& ns, const std::string& dev, const std::string& stat);

/// Resident memory (VmRSS) of process `pid` in KiB; -1 if it is gone.
long rss_kib(pid_t pid);
/// The most resident memory process `pid` has had (VmHWM) in KiB; -1 if
/// it is gone.
long peak_rss_kib(pid_t pid);
/// Number of open file descriptors of process `pid`; -1 if it is gone.
int open_fds(pid_t pid);

/// Sends SIGUSR1 to udpringd and parses the "stats" line it logs.
std::map<std::string, uint64_t> daemon_stats(Process& daemon);

/// The four namespaces and links drawn above (no overlay yet).
class Topology {
 public:
  Topology();
  ~Topology();
  std::string prefix;
  Netns n1, n2, p1, p2;
  std::string dir;  // scratch directory (logs, net-conf), removed at the end
  std::string net_conf;  // path of a net-conf.json for 10.50.0.0/16, port 8285
};

/// Starts udpringd in node `i` (1 or 2) of `topo` with the other node as its
/// static peer, waits until it logs "ready". Extra flags are appended;
/// `launcher` (e.g. setpriv and its arguments) is put in front of the command.
/// It logs to udpringd-n<i>.log in topo.dir, or `log_name` there (two
/// daemons on one node).
std::unique_ptr<Process> start_udpringd(Topology& topo, int node,
                                        const std::vector<std::string>& extra = {},
                                        const std::vector<std::string>& launcher = {},
                                        const std::string& log_name = "");

}  // namespace udpring::test
