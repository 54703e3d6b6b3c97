#include "tests/support/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#ifndef UDPRINGD_PATH
#error "UDPRINGD_PATH must name the udpringd binary"
#endif

namespace udpring::test {

int sh(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  if (rc == -1 || !WIFEXITED(rc)) return -1;
  return WEXITSTATUS(rc);
}

void sh_ok(const std::string& cmd) {
  if (int rc = sh(cmd); rc != 0) {
    throw std::runtime_error("command failed (exit " + std::to_string(rc) + "): " + cmd);
  }
}

std::string sh_out(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  pclose(f);
  return out;
}

std::string integration_unavailable() {
  if (geteuid() != 0) return "integration tests need root (network namespaces, TUN)";
  if (access("/dev/net/tun", R_OK | W_OK) != 0) return "/dev/net/tun is not available";
  if (sh("command -v ip >/dev/null 2>&1") != 0) return "iproute2 (ip) is not installed";
  return "";
}

Netns::Netns(std::string name) : name_(std::move(name)) {
  sh("ip netns del " + name_ + " 2>/dev/null");
  sh_ok("ip netns add " + name_);
  sh_ok("ip -n " + name_ + " link set lo up");
}

Netns::~Netns() {
  // Whatever a failed test left running in here dies with the namespace.
  sh("for p in $(ip netns pids " + name_ + " 2>/dev/null); do kill -9 $p; done");
  sh("ip netns del " + name_ + " 2>/dev/null");
}

void run_in_netns(const std::string& ns, const std::function<void()>& fn) {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      const std::string path = "/run/netns/" + ns;
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw std::runtime_error("open " + path);
      const int rc = ::setns(fd, CLONE_NEWNET);
      ::close(fd);
      if (rc != 0) throw std::runtime_error("setns " + path);
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  t.join();
  if (error) std::rethrow_exception(error);
}

Process::Process(const std::string& ns, std::vector<std::string> argv, const std::string& log_path)
    : log_path_(log_path) {
  std::vector<std::string> full = {"ip", "netns", "exec", ns};
  full.insert(full.end(), argv.begin(), argv.end());
  // Truncate before fork: a caller that waits for a line in the log must not
  // find it in what an earlier process with the same log path wrote.
  const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_ = fork();
  if (pid_ < 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("fork");
  }
  if (pid_ == 0) {
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> args;
    for (auto& a : full) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  if (fd >= 0) ::close(fd);
}

Process::~Process() {
  if (!reaped_) stop(2000);
}

bool Process::running() {
  if (reaped_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return false;
  }
  return true;
}

int Process::stop(int timeout_ms) {
  if (reaped_) return exit_code_;
  kill(pid_, SIGTERM);
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    if (!running()) return exit_code_;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  reaped_ = true;
  exit_code_ = -1;
  return exit_code_;
}

std::optional<int> Process::wait_exit(int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 10) {
    if (!running()) return exit_code_;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

std::string Process::log() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Process::wait_for_log(const std::string& text, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 20) {
    if (log().find(text) != std::string::npos) return true;
    if (!running()) return log().find(text) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

namespace {

long status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(field.size()));
  }
  return -1;
}

}  // namespace

long long udp_rcvbuf_errors(const Netns& ns) {
  const std::string out = sh_out(ns.exec() +
                                 "awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == \"RcvbufErrors\") c = i; h = 1 }"
                                 " else print $c }' /proc/net/snmp");
  return out.empty() ? -1 : std::stoll(out);
}

long long link_dropped(const Netns& ns, const std::string& dev, const std::string& stat) {
  const std::string out = sh_out(ns.exec() + "cat /sys/class/net/" + dev + "/statistics/" + stat);
  return out.empty() ? -1 : std::stoll(out);
}

long rss_kib(pid_t pid) { return status_kib(pid, "VmRSS:"); }

long peak_rss_kib(pid_t pid) { return status_kib(pid, "VmHWM:"); }

int open_fds(pid_t pid) {
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec);
  if (ec) return -1;
  int n = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) ++n;
  return n;
}

std::map<std::string, uint64_t> daemon_stats(Process& daemon) {
  const auto count_lines = [&] {
    const std::string l = daemon.log();
    size_t n = 0;
    for (size_t pos = 0; (pos = l.find("stats (SIGUSR1)", pos)) != std::string::npos; ++pos) ++n;
    return n;
  };
  const size_t before = count_lines();
  kill(daemon.pid(), SIGUSR1);
  for (int i = 0; i < 300 && count_lines() == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::string l = daemon.log();
  const size_t at = l.rfind("stats (SIGUSR1): ");
  if (at == std::string::npos || count_lines() == before) {
    throw std::runtime_error("udpringd printed no stats line:\n" + l);
  }
  std::map<std::string, uint64_t> out;
  std::istringstream line(l.substr(at + 17, l.find('\n', at) - at - 17));
  std::string kv;
  while (line >> kv) {
    const auto eq = kv.find('=');
    if (eq != std::string::npos) out[kv.substr(0, eq)] = std::stoull(kv.substr(eq + 1));
  }
  return out;
}

namespace {

std::string unique_prefix() {
  static std::atomic<int> counter{0};
  // Short: interface-independent, but namespace names show up in `ip netns`.
  return "urt" + std::to_string(getpid() % 100000) + "x" + std::to_string(counter++);
}

}  // namespace

Topology::Topology()
    : prefix(unique_prefix()),
      n1(prefix + "n1"),
      n2(prefix + "n2"),
      p1(prefix + "p1"),
      p2(prefix + "p2") {
  char tmpl[] = "/tmp/udpring-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  dir = tmpl;
  sh_ok("ip link add u0 netns " + n1.name() + " type veth peer name u0 netns " + n2.name());
  sh_ok("ip -n " + n1.name() + " addr add 192.168.77.1/24 dev u0");
  sh_ok("ip -n " + n2.name() + " addr add 192.168.77.2/24 dev u0");
  sh_ok("ip -n " + n1.name() + " link set u0 up");
  sh_ok("ip -n " + n2.name() + " link set u0 up");
  // Make the veth behave like a real NIC: UDP GSO is segmented at the device
  // (so the peer sees ordinary datagrams), and GRO merges what arrives.
  for (const Netns* n : {&n1, &n2}) {
    sh(n->exec() + "ethtool -K u0 tx-udp-segmentation off gro on rx-udp-gro-forwarding on"
                   " >/dev/null 2>&1");
  }
  const Netns* nodes[] = {&n1, &n2};
  const Netns* pods[] = {&p1, &p2};
  for (int i = 0; i < 2; ++i) {
    const std::string n = nodes[i]->name();
    const std::string p = pods[i]->name();
    const std::string sub = "10.50." + std::to_string(i + 1) + ".";
    sh_ok("ip link add vp netns " + n + " type veth peer name eth0 netns " + p);
    sh_ok("ip -n " + n + " addr add " + sub + "1/24 dev vp");
    sh_ok("ip -n " + p + " addr add " + sub + "2/24 dev eth0");
    sh_ok("ip -n " + n + " link set vp mtu 1472 up");
    sh_ok("ip -n " + p + " link set eth0 mtu 1472 up");
    sh_ok("ip -n " + p + " route add default via " + sub + "1");
    sh_ok("ip netns exec " + n +
          " sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0"
          " net.ipv4.conf.default.rp_filter=0");
  }
  net_conf = dir + "/net-conf.json";
  std::ofstream(net_conf) << R"({"Network":"10.50.0.0/16","Backend":{"Type":"udp","Port":8285}})";
}

Topology::~Topology() { sh("rm -rf " + dir); }

std::unique_ptr<Process> start_udpringd(Topology& topo, int node,
                                        const std::vector<std::string>& extra,
                                        const std::vector<std::string>& launcher,
                                        const std::string& log_name) {
  const int peer = 3 - node;
  const std::string ns = node == 1 ? topo.n1.name() : topo.n2.name();
  std::vector<std::string> argv = {
      UDPRINGD_PATH,
      "--subnet-mgr=static",
      "--net-config-path=" + topo.net_conf,
      "--static-subnet=10.50." + std::to_string(node) + ".0/24",
      "--static-peer=10.50." + std::to_string(peer) + ".0/24=192.168.77." + std::to_string(peer),
      "--iface=u0",
      "--subnet-file=" + topo.dir + "/subnet-n" + std::to_string(node) + ".env"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.insert(argv.begin(), launcher.begin(), launcher.end());
  const std::string log =
      log_name.empty() ? "udpringd-n" + std::to_string(node) + ".log" : log_name;
  auto p = std::make_unique<Process>(ns, argv, topo.dir + "/" + log);
  if (!p->wait_for_log("udpringd ready", 10000)) {
    throw std::runtime_error("udpringd in " + ns + " did not become ready:\n" + p->log());
  }
  return p;
}

}  // namespace udpring::test
