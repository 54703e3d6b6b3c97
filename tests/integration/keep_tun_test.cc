// --keep-tun in the two-node topology (tests/support/netns.h): a restart
// leaves the persistent TUN with its address and route, the next udpringd
// reattaches it, and what a pod sends meanwhile is dropped in the TUN rather
// than routed elsewhere; a kept device that no longer fits is made anew; a
// device held by another process or of another kind is refused by name.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/unique_fd.h"
#include "io/control/fd_passing.h"
#include "tests/support/netns.h"
#include "tests/support/traffic.h"
#include "tests/support/two_nodes.h"

namespace udpring::test {
namespace {

using Clock = std::chrono::steady_clock;

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

bool tun_exists(const Topology& topo) {
  return sh("ip -n " + topo.n1.name() + " link show flannel0 >/dev/null 2>&1") == 0;
}

struct PingCount {
  int sent = 0;
  int received = 0;
  double max_ms = 0;  // the slowest reply: a packet that waited out a gap
};

// Pings every 10 ms from p1 to p2's pod, `count` of them, in the background.
class PingLoop {
 public:
  PingLoop(Topology& topo, int count)
      : p_(topo.p1.name(), {"ping", "-n", "-i", "0.01", "-W", "1", "-c", std::to_string(count),
                            "10.50.2.2"},
           topo.dir + "/ping-loop.log") {}
  PingCount finish() {
    (void)p_.wait_exit(30000);
    std::smatch m;
    const std::string out = p_.log();
    PingCount c;
    if (std::regex_search(out, m, std::regex(R"((\d+) packets transmitted, (\d+) received)"))) {
      c.sent = std::stoi(m[1]);
      c.received = std::stoi(m[2]);
    }
    if (std::regex_search(out, m, std::regex(R"(= [\d.]+/[\d.]+/([\d.]+)/)"))) {
      c.max_ms = std::stod(m[1]);
    }
    return c;
  }

 private:
  Process p_;
};

struct RestartResult {
  int restart_ms = 0;  // SIGTERM sent to "ready" logged by the next daemon
  PingCount pings;
  uint64_t tcp_bytes = 0;
  std::string error;  // the TCP transfer's, if it failed
};

// 400 pings (4 s) and a `bytes` verified TCP transfer from p1 to p2, with
// `action` (a restart of node 1's daemon) run 1 s in and timed.
RestartResult across_traffic(Topology& topo, uint64_t bytes, const std::function<void()>& action) {
  RestartResult r;
  PingLoop pings(topo, 400);
  std::thread tcp([&] {
    try {
      r.tcp_bytes = tcp_transfer_verified(topo.p2.name(), "10.50.2.2", 5201, topo.p1.name(), bytes);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto t0 = Clock::now();
  action();
  r.restart_ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
  tcp.join();
  r.pings = pings.finish();
  return r;
}

// SIGTERM to node 1's daemon, then a new one: "ready" ends the timing.
RestartResult restart_under_traffic(Topology& topo, std::unique_ptr<Process>& d1,
                                    const std::vector<std::string>& flags, uint64_t bytes) {
  return across_traffic(topo, bytes, [&] {
    EXPECT_EQ(d1->stop(), 0) << d1->log();
    d1 = start_udpringd(topo, 1, flags);
  });
}

void report(const char* what, const RestartResult& r) {
  std::printf("%s: restart %d ms, %d of %d pings (10 ms apart) lost, slowest reply %.1f ms, "
              "%llu TCP bytes verified%s%s\n",
              what, r.restart_ms, r.pings.sent - r.pings.received, r.pings.sent, r.pings.max_ms,
              static_cast<unsigned long long>(r.tcp_bytes), r.error.empty() ? "" : ", ",
              r.error.c_str());
}

TEST(KeepTun, RestartKeepsTheDeviceAndLosesOnlyTheGapNoTcpByte) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::vector<std::string> flags = {"--keep-tun", "--workers=2"};
  auto d2 = start_udpringd(topo, 2, flags);
  auto d1 = start_udpringd(topo, 1, flags);
  EXPECT_TRUE(has(d1->log(), "TUN flannel0 is persistent (--keep-tun)")) << d1->log();
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();

  constexpr uint64_t kBytes = 256ull << 20;
  const RestartResult kept = restart_under_traffic(topo, d1, flags, kBytes);
  report("--keep-tun", kept);
  EXPECT_TRUE(has(d1->log(), "TUN flannel0 kept by an earlier run (address 10.50.1.0/32, MTU "
                             "1472, route 10.50.0.0/16): reattaching its queues"))
      << d1->log();
  EXPECT_EQ(kept.tcp_bytes, kBytes) << kept.error;
  EXPECT_EQ(kept.pings.sent, 400);
  // Only what was sent while no daemon read the TUN is lost: at most the
  // restart's length in pings, plus the one or two in flight.
  const int lost = kept.pings.sent - kept.pings.received;
  EXPECT_LE(lost, kept.restart_ms / 10 + 3) << "restart took " << kept.restart_ms << " ms";
  EXPECT_LT(kept.restart_ms, 2000);

  // The same restart without --keep-tun: the device, and with it the
  // route, goes for a while; measured for comparison (docs/reliability.md).
  d1->stop();
  auto plain = start_udpringd(topo, 1, {"--workers=2"});
  EXPECT_TRUE(has(plain->log(), "is no longer persistent (no --keep-tun)")) << plain->log();
  const RestartResult gone = restart_under_traffic(topo, plain, {"--workers=2"}, kBytes);
  report("without --keep-tun", gone);
  EXPECT_EQ(gone.tcp_bytes, kBytes) << gone.error;
  EXPECT_FALSE(has(plain->log(), "kept by an earlier run")) << plain->log();
  EXPECT_EQ(plain->stop(), 0);
  EXPECT_FALSE(tun_exists(topo)) << "a device that is not kept goes with its daemon";
  EXPECT_EQ(d2->stop(), 0);
}

// The DaemonSet rollout with maxSurge: the new udpringd starts beside the
// running one, takes its TUN queues and UDP sockets as they are (nothing
// the kernel queued is dropped), and the old one, idle, is stopped later.
TEST(KeepTun, ADaemonStartedBesideTheRunningOneTakesItsQueuesAndSocketsLosingNothing) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::vector<std::string> flags = {"--keep-tun", "--workers=2", "--healthz-port=9139"};
  auto d2 = start_udpringd(topo, 2, {"--workers=2"});
  auto old = start_udpringd(topo, 1, flags);
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << old->log();

  // A successor that connects and does not ask yet (one still setting up):
  // the node's health port says "not ready" meanwhile, so that the new
  // pod's probe, which reaches the old daemon, does not pass early.
  {
    Process starting(topo.n1.name(),
                     {"python3", "-c", R"(import socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect('\0udpringd-handover/flannel0')
time.sleep(1.5))"},
                     topo.dir + "/starting.log");
    ASSERT_TRUE(old->wait_for_log("a successor is setting up", 3000)) << old->log();
    EXPECT_TRUE(has(http_get(topo.n1.name(), 9139, "/readyz"), "503")) << old->log();
    ASSERT_TRUE(old->wait_for_log("the successor went away without taking over", 4000))
        << old->log() << starting.log();
    EXPECT_TRUE(has(http_get(topo.n1.name(), 9139, "/readyz"), "200 OK"));
  }

  constexpr uint64_t kBytes = 256ull << 20;
  std::unique_ptr<Process> next;
  const RestartResult r = across_traffic(topo, kBytes, [&] {
    next = start_udpringd(topo, 1, flags, {}, "udpringd-n1-next.log");
  });
  report("handover", r);
  ASSERT_TRUE(next) << old->log();
  std::smatch gap;
  const std::string next_log = next->log();
  ASSERT_TRUE(std::regex_search(next_log, gap, std::regex(R"(forwarding (\d+) ms after the predecessor's workers stopped)")))
      << next_log;
  std::printf("handover: the data path went unread for %s ms\n", gap[1].str().c_str());
  EXPECT_TRUE(has(next->log(), "which offers a handover")) << next->log();
  EXPECT_TRUE(has(next->log(), "took over TUN flannel0's 2 queue(s) and the UDP sockets from "
                               "udpringd pid " + std::to_string(old->pid())))
      << next->log();
  EXPECT_TRUE(has(old->log(), "handed TUN flannel0's queues and the UDP sockets to udpringd pid " +
                                  std::to_string(next->pid())))
      << old->log();
  EXPECT_TRUE(old->running()) << "the old one waits to be stopped, idle";
  EXPECT_EQ(r.tcp_bytes, kBytes) << r.error;
  EXPECT_EQ(r.pings.sent, 400);
  EXPECT_EQ(r.pings.received, r.pings.sent) << "a handover loses no ping; took " << r.restart_ms
                                            << " ms\n" << old->log() << next->log();
  // The health port went with the data path.
  EXPECT_TRUE(has(http_get(topo.n1.name(), 9139, "/readyz"), "200 OK"));
  EXPECT_TRUE(has(next->log(), "health and metrics on 0.0.0.0:9139")) << next->log();

  // Stopping the old one takes nothing from the new one.
  EXPECT_EQ(old->stop(), 0) << old->log();
  EXPECT_FALSE(has(old->log(), "leaving TUN flannel0 in place")) << old->log();
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 3)) << next->log();
  EXPECT_EQ(tcp_transfer_verified(topo.p2.name(), "10.50.2.2", 5202, topo.p1.name(), 16u << 20),
            16u << 20);

  // A successor that would build something else (one worker): the running
  // one closes its queues and sockets for it, and it builds its own.
  auto third = start_udpringd(topo, 1, {"--keep-tun", "--workers=1"}, {}, "udpringd-n1-third.log");
  EXPECT_TRUE(has(third->log(), "udpringd pid " + std::to_string(next->pid()) +
                                    " handed nothing over (it asks for workers=1 where this "
                                    "daemon runs workers=2)"))
      << third->log();
  EXPECT_TRUE(has(third->log(), "TUN flannel0 kept by an earlier run")) << third->log();
  EXPECT_TRUE(has(next->log(), "closed TUN flannel0's queues and the sockets")) << next->log();
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << third->log();
  EXPECT_EQ(next->stop(), 0);
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << third->log();
  EXPECT_EQ(third->stop(), 0);
  EXPECT_EQ(d2->stop(), 0);
}

// What systemd does with FDSTORE=1 and FDSTOREREMOVE=1 (sd_notify(3)), and
// how it passes what it keeps to the service's next process (LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES, descriptors from 3 on: sd_listen_fds(3)).
class SystemdStandIn {
 public:
  explicit SystemdStandIn(const std::string& dir) : path_(dir + "/notify.sock") {
    fd_ = core::UniqueFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path_.c_str());
    const timeval tick{0, 50 * 1000};
    if (!fd_ || bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick) != 0) {
      throw std::runtime_error("binding " + path_);
    }
    // systemd handles a message as it comes: FDSTOREREMOVE=1 must close its
    // copies before the sender goes on (else the device looks held).
    reader_ = std::thread([this] {
      while (!done_) receive();
    });
  }
  ~SystemdStandIn() {
    done_ = true;
    reader_.join();
  }
  std::string env() const { return "NOTIFY_SOCKET=" + path_; }

  size_t stored() {
    std::lock_guard lock(mu_);
    return store_.size();
  }
  bool holds(const std::string& name) {
    std::lock_guard lock(mu_);
    return store_.count(name) != 0;
  }
  std::vector<std::string> removed() {
    std::lock_guard lock(mu_);
    return removed_;
  }
  // Waits up to 1 s until `n` descriptors are stored.
  bool wait_stored(size_t n) {
    for (int i = 0; i < 100 && stored() != n; ++i) settle(10);
    return stored() == n;
  }
  // Lets `ms` pass for messages in flight to be handled.
  void settle(int ms = 200) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

  // The next process's launcher: the stored descriptors at 3, 4, ... in the
  // order stored, and the variables naming them and that process.
  std::vector<std::string> launcher() {
    std::lock_guard lock(mu_);
    std::string pairs;
    for (const std::string& name : order_) {
      const int fd = store_.at(name).get();
      (void)fcntl(fd, F_SETFD, 0);  // inherited by the next child; see close_inherited()
      pairs += (pairs.empty() ? "" : ",") + std::to_string(fd) + "=" + name;
    }
    // bash, not python3: its start costs 10 ms here, python's 400, and
    // that would be the restart's gap.
    return {"bash", "-c", R"(set -e
IFS=, read -ra list <<< "$1"
notify=$2
shift 2
n=${#list[@]} names=
for ((i = 0; i < n; i++)); do eval "exec $((100 + i))<&${list[i]%%=*} ${list[i]%%=*}<&-"; done
for ((i = 0; i < n; i++)); do
  eval "exec $((3 + i))<&$((100 + i)) $((100 + i))<&-"
  names+=${names:+:}${list[i]#*=}
done
export NOTIFY_SOCKET=$notify LISTEN_PID=$$ LISTEN_FDS=$n LISTEN_FDNAMES=$names
exec "$@")",
            "launcher", pairs, path_};
  }
  void close_inherited() {
    std::lock_guard lock(mu_);
    for (auto& [name, fd] : store_) (void)fcntl(fd.get(), F_SETFD, FD_CLOEXEC);
  }

 private:
  void receive() {
    std::optional<io::ReceivedMessage> got = io::receive_with_fds(fd_.get());
    if (!got) return;
    std::vector<core::UniqueFd>& fds = got->fds;
    const std::string& text = got->text;
    std::smatch m;
    if (!std::regex_search(text, m, std::regex("FDNAME=([^\\n]*)"))) return;
    const std::string name = m[1];
    std::lock_guard lock(mu_);
    if (has(text, "FDSTORE=1") && fds.size() == 1) {
      std::erase(order_, name);  // stored again: where it is stored last
      order_.push_back(name);
      store_[name] = std::move(fds[0]);
    } else if (has(text, "FDSTOREREMOVE=1")) {
      std::erase(order_, name);
      store_.erase(name);
      removed_.push_back(name);
    }
  }

  std::string path_;
  core::UniqueFd fd_;
  std::atomic<bool> done_{false};
  std::mutex mu_;
  std::map<std::string, core::UniqueFd> store_;
  std::vector<std::string> order_;
  std::vector<std::string> removed_;
  std::thread reader_;  // last: started once the rest exists
};

// `systemctl restart` of a unit with FileDescriptorStoreMax=: the daemon
// stops first, its queues and sockets wait in systemd's store, and the next
// one takes them with what the kernel queued meanwhile.
TEST(KeepTun, ARestartUnderSystemdKeepsTheQueuesInItsFdStoreLosingNothing) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  SystemdStandIn systemd(topo.dir);
  const std::vector<std::string> flags = {"--keep-tun", "--workers=2"};
  auto d2 = start_udpringd(topo, 2, {"--workers=2"});
  auto d1 = start_udpringd(topo, 1, flags, {"env", systemd.env()});
  ASSERT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();

  constexpr uint64_t kBytes = 256ull << 20;
  std::string stopped_log;
  const RestartResult r = across_traffic(topo, kBytes, [&] {
    EXPECT_EQ(d1->stop(), 0) << d1->log();
    stopped_log = d1->log();
    EXPECT_TRUE(systemd.wait_stored(7));
    d1 = start_udpringd(topo, 1, flags, systemd.launcher(), "udpringd-n1-next.log");
    systemd.close_inherited();
  });
  report("restart under systemd", r);
  systemd.settle();
  EXPECT_TRUE(has(stopped_log, "gave TUN flannel0's 2 queue(s) and the UDP sockets to systemd's "
                               "fd store"))
      << stopped_log;
  // Per worker a queue, its receiving socket and its send socket, then the terms.
  const std::vector<std::string> names = {"udpring-tun-0", "udpring-udp-0", "udpring-send-0",
                                          "udpring-tun-1", "udpring-udp-1", "udpring-send-1",
                                          "udpring-terms"};
  std::vector<std::string> removed = systemd.removed();
  std::sort(removed.begin(), removed.end());
  std::vector<std::string> sorted_names = names;
  std::sort(sorted_names.begin(), sorted_names.end());
  EXPECT_EQ(removed, sorted_names) << "the next daemon leaves systemd no copy";
  EXPECT_EQ(systemd.stored(), 0u);
  const std::string next_log = d1->log();
  EXPECT_TRUE(has(next_log, "took TUN flannel0's 2 queue(s) and the UDP sockets from systemd's "
                            "fd store"))
      << next_log;
  std::smatch gap;
  ASSERT_TRUE(std::regex_search(next_log, gap, std::regex(R"(forwarding (\d+) ms after the predecessor's workers stopped)")))
      << next_log;
  std::printf("restart under systemd: the data path went unread for %s ms\n", gap[1].str().c_str());
  EXPECT_EQ(r.tcp_bytes, kBytes) << r.error;
  EXPECT_EQ(r.pings.sent, 400);
  EXPECT_EQ(r.pings.received, r.pings.sent)
      << "what arrived meanwhile waited in the kept queues; the restart took " << r.restart_ms
      << " ms\n" << next_log;

  // A restart into other terms (one worker): what systemd kept is closed
  // and the device is reattached for the new shape.
  EXPECT_EQ(d1->stop(), 0);
  ASSERT_TRUE(systemd.wait_stored(names.size()));
  d1 = start_udpringd(topo, 1, {"--keep-tun", "--workers=1"}, systemd.launcher(),
                      "udpringd-n1-third.log");
  systemd.close_inherited();
  EXPECT_TRUE(has(d1->log(), "the queues and sockets systemd kept were built for workers=2 where "
                             "this daemon runs workers=1: closed"))
      << d1->log();
  EXPECT_EQ(systemd.stored(), 0u);
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();

  // This one stores its own, the shape it runs: one queue, one socket.
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_TRUE(has(d1->log(), "gave TUN flannel0's 1 queue(s)")) << d1->log();
  EXPECT_TRUE(systemd.wait_stored(3));
  EXPECT_TRUE(systemd.holds("udpring-tun-0"));
  EXPECT_EQ(d2->stop(), 0);
}

// Between two daemons the device waits with its address and route; a kept
// device whose address or MTU no longer fits is deleted and made anew.
TEST(KeepTun, StoppedDaemonLeavesTheRouteAndAChangedDeviceIsMadeAnew) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  const std::string n1 = "ip -n " + topo.n1.name() + " ";
  auto d2 = start_udpringd(topo, 2, {"--workers=1"});
  auto d1 = start_udpringd(topo, 1, {"--keep-tun", "--workers=1"});
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_TRUE(has(d1->log(), "leaving TUN flannel0 in place (--keep-tun)")) << d1->log();
  ASSERT_TRUE(tun_exists(topo));
  EXPECT_TRUE(has(sh_out(n1 + "-o addr show dev flannel0"), "inet 10.50.1.0/32"));
  EXPECT_TRUE(has(sh_out(n1 + "route show dev flannel0"), "10.50.0.0/16"));
  // Nobody reads it: a pod's packet to the overlay is dropped there, not
  // sent out of the node's other routes, and the pod is told nothing.
  EXPECT_FALSE(ping(topo.p1, "10.50.2.2", 1));
  EXPECT_TRUE(has(sh_out(n1 + "route get 10.50.2.2"), "dev flannel0"));

  // A stray address on the kept device: made anew, with ours alone.
  sh_ok(n1 + "addr add 10.50.1.77/32 dev flannel0");
  d1 = start_udpringd(topo, 1, {"--keep-tun", "--workers=1"});
  EXPECT_TRUE(has(d1->log(), "TUN flannel0 left by an earlier run has address(es) 10.50.1.0/32, "
                             "10.50.1.77/32 where this lease needs 10.50.1.0/32: deleting it "
                             "and making it anew"))
      << d1->log();
  const std::string addrs = sh_out(n1 + "-o -4 addr show dev flannel0");
  EXPECT_TRUE(has(addrs, "10.50.1.0/32")) << addrs;
  EXPECT_FALSE(has(addrs, "10.50.1.77")) << addrs;
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  EXPECT_EQ(d1->stop(), 0);

  // A smaller underlay MTU: the TUN's must follow.
  sh_ok(n1 + "link set u0 mtu 1400");
  d1 = start_udpringd(topo, 1, {"--keep-tun", "--workers=1"});
  EXPECT_TRUE(has(d1->log(), "has MTU 1472 where this run needs 1372: deleting it")) << d1->log();
  EXPECT_TRUE(has(sh_out(n1 + "link show flannel0"), "mtu 1372"));
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  EXPECT_EQ(d1->stop(), 0);

  // Without --keep-tun the kept device is taken back and goes at the end.
  d1 = start_udpringd(topo, 1, {"--workers=1"});
  EXPECT_TRUE(has(d1->log(), "kept by an earlier run")) << d1->log();
  EXPECT_TRUE(ping(topo.p1, "10.50.2.2", 2)) << d1->log();
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_FALSE(tun_exists(topo));
  EXPECT_EQ(d2->stop(), 0);
}

// A second daemon on the node, or a device of the name that is no TUN:
// each refused with what to do, and the running daemon keeps its queues.
TEST(KeepTun, ADeviceHeldByAnotherProcessOrOfAnotherKindIsRefused) {
  UDPRING_REQUIRE_INTEGRATION();
  Topology topo;
  // Without --keep-tun it offers no handover.
  auto d1 = start_udpringd(topo, 1, {"--workers=1"});
  const std::vector<std::string> second = {
      UDPRINGD_PATH, "--subnet-mgr=static", "--net-config-path=" + topo.net_conf,
      "--static-subnet=10.50.1.0/24", "--iface=u0", "--keep-tun", "--subnet-file=",
      "--healthz-port=0"};  // port 0: no health server
  Process other(topo.n1.name(), second, topo.dir + "/second.log");
  const auto code = other.wait_exit(5000);
  ASSERT_TRUE(code.has_value()) << other.log();
  EXPECT_EQ(*code, 1) << other.log();
  EXPECT_TRUE(has(other.log(), "TUN flannel0 is in use: 1 queue(s) still open in another process "
                               "after 2 s; is another udpringd or flanneld running on this node?"))
      << other.log();
  EXPECT_TRUE(d1->running());
  EXPECT_EQ(d1->stop(), 0);
  EXPECT_FALSE(tun_exists(topo)) << "not kept: the device went with its daemon";

  for (const auto& [make, kind] :
       {std::pair{"link add flannel0 type veth peer name fl0peer", "kind \"veth\""},
        std::pair{"tuntap add dev flannel0 mode tap multi_queue", "a TAP"}}) {
    sh_ok("ip -n " + topo.n1.name() + " " + make);
    Process wrong(topo.n1.name(), second, topo.dir + "/wrong-kind.log");
    const auto wrong_code = wrong.wait_exit(5000);
    ASSERT_TRUE(wrong_code.has_value()) << wrong.log();
    EXPECT_EQ(*wrong_code, 1);
    EXPECT_TRUE(has(wrong.log(), std::string("flannel0 exists and is not a TUN device (") + kind +
                                     "): delete it (ip link del flannel0) or give udpringd "
                                     "another --tun-name"))
        << wrong.log();
    sh_ok("ip -n " + topo.n1.name() + " link del flannel0");
  }
}

}  // namespace
}  // namespace udpring::test
