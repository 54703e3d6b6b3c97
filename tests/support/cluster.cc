#include "tests/support/cluster.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace udpring::test {
namespace {

std::string unique_prefix() {
  static std::atomic<int> counter{0};
  return "urc" + std::to_string(getpid() % 100000) + "x" + std::to_string(counter++);
}

std::string make_dir() {
  char tmpl[] = "/tmp/udpring-cluster-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  return tmpl;
}

}  // namespace

Cluster::Cluster(int nodes, const std::string& network)
    : prefix(unique_prefix()), dir(make_dir()), lan(prefix + "lan") {
  sh_ok("ip -n " + lan.name() + " link add br0 type bridge");
  sh_ok("ip -n " + lan.name() + " addr add 192.168.78.1/24 dev br0");
  sh_ok("ip -n " + lan.name() + " link set br0 up");
  net_conf = dir + "/net-conf.json";
  std::ofstream(net_conf) << R"({"Network":")" << network
                          << R"(","Backend":{"Type":"udp","Port":8285}})";
  for (int i = 0; i < nodes; ++i) add_node();
}

Cluster::~Cluster() {
  pods_.clear();
  nodes_.clear();
  sh("rm -rf " + dir);
}

int Cluster::add_node() {
  const int i = size();
  nodes_.push_back(std::make_unique<Netns>(prefix + "n" + std::to_string(i)));
  pods_.push_back(nullptr);
  const std::string n = nodes_.back()->name();
  std::string v = "v";
  v += std::to_string(i);
  sh_ok("ip link add u0 netns " + n + " type veth peer name " + v + " netns " + lan.name());
  sh_ok("ip -n " + lan.name() + " link set " + v + " master br0 up");
  sh_ok("ip -n " + n + " addr add " + node_ip(i) + "/24 dev u0");
  sh_ok("ip -n " + n + " link set u0 up");
  sh(nodes_.back()->exec() +
     "ethtool -K u0 tx-udp-segmentation off gro on rx-udp-gro-forwarding on >/dev/null 2>&1");
  sh_ok("ip netns exec " + n +
        " sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0"
        " net.ipv4.conf.default.rp_filter=0");
  return i;
}

std::string Cluster::env_value(const std::string& subnet_env, const std::string& key) {
  std::ifstream in(subnet_env);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  }
  return "";
}

std::string Cluster::lease_from_env(const std::string& subnet_env) {
  const std::string s = env_value(subnet_env, "FLANNEL_SUBNET");
  const auto slash = s.find('/');
  if (slash == std::string::npos) return "";
  const auto dot = s.rfind('.', slash);
  return s.substr(0, dot + 1) + "0" + s.substr(slash);
}

std::unique_ptr<Process> Cluster::start_on_file_store(int i, const std::vector<std::string>& extra) {
  if (!std::filesystem::exists(lease_dir() + "/config")) {
    std::filesystem::create_directories(lease_dir() + "/subnets");
    std::filesystem::copy_file(net_conf, lease_dir() + "/config");
  }
  std::vector<std::string> argv = {UDPRINGD_PATH, "--subnet-mgr=file", "--lease-dir=" + lease_dir(),
                                   "--iface=u0", "--subnet-file=" + subnet_env(i)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = std::make_unique<Process>(node(i).name(), argv,
                                     dir + "/udpringd-" + std::to_string(i) + "-" + std::to_string(starts_++) + ".log");
  if (!p->wait_for_log("udpringd ready", 10000)) ADD_FAILURE() << "node " << i << " not ready:\n" << p->log();
  return p;
}

bool Cluster::ping(const Netns& from, const std::string& ip) {
  return sh(from.exec() + "ping -c1 -W1 " + ip + " >/dev/null 2>&1") == 0;
}

bool Cluster::reachable_within(const Netns& from, const std::string& ip, int ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  do {
    if (ping(from, ip)) return std::chrono::steady_clock::now() <= deadline;
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

std::string Cluster::add_pod(int i, const std::string& subnet_env) {
  const std::string subnet = env_value(subnet_env, "FLANNEL_SUBNET");  // base+1/len
  const std::string mtu = env_value(subnet_env, "FLANNEL_MTU");
  const auto slash = subnet.find('/');
  const auto dot = subnet.rfind('.', slash);
  if (subnet.empty() || mtu.empty() || slash == std::string::npos || dot == std::string::npos) {
    throw std::runtime_error(subnet_env + " has no FLANNEL_SUBNET/FLANNEL_MTU");
  }
  const std::string base3 = subnet.substr(0, dot + 1);
  const int last = std::stoi(subnet.substr(dot + 1, slash - dot - 1));
  const std::string len = subnet.substr(slash + 1);
  const std::string gw = base3 + std::to_string(last);
  const std::string pod_ip = base3 + std::to_string(last + 1);
  pods_.at(i) = std::make_unique<Netns>(prefix + "p" + std::to_string(i));
  const std::string n = nodes_.at(i)->name();
  const std::string p = pods_.at(i)->name();
  sh_ok("ip link add vp netns " + n + " type veth peer name eth0 netns " + p);
  sh_ok("ip -n " + n + " addr add " + gw + "/" + len + " dev vp");
  sh_ok("ip -n " + p + " addr add " + pod_ip + "/" + len + " dev eth0");
  sh_ok("ip -n " + n + " link set vp mtu " + mtu + " up");
  sh_ok("ip -n " + p + " link set eth0 mtu " + mtu + " up");
  sh_ok("ip -n " + p + " route add default via " + gw);
  return pod_ip;
}

void make_test_pki(const std::string& d, const std::string& ip) {
  const std::string q = " >/dev/null 2>&1";
  sh_ok("mkdir -p " + d);
  sh_ok("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=udpring-test-ca -keyout " + d +
        "/ca.key -out " + d + "/ca.crt" + q);
  for (const std::string who : {"server", "client"}) {
    sh_ok("openssl req -newkey rsa:2048 -nodes -subj /CN=" + who + " -keyout " + d + "/" + who +
          ".key -out " + d + "/" + who + ".csr" + q);
    std::ofstream(d + "/" + who + ".ext")
        << "subjectAltName=IP:" << ip << ",IP:127.0.0.1\nextendedKeyUsage="
        // etcd's JSON gateway dials etcd's gRPC side with the server
        // certificate, so that one needs clientAuth too.
        << (who == "server" ? "serverAuth,clientAuth" : "clientAuth") << "\n";
    sh_ok("openssl x509 -req -days 2 -in " + d + "/" + who + ".csr -CA " + d + "/ca.crt -CAkey " +
          d + "/ca.key -CAcreateserial -extfile " + d + "/" + who + ".ext -out " + d + "/" + who +
          ".crt" + q);
  }
}

Etcd::Etcd(const Netns& ns, std::string ip, std::string data_dir, std::string pki_dir)
    : ns_(ns), ip_(std::move(ip)), data_dir_(std::move(data_dir)), pki_(std::move(pki_dir)) {
  if (!pki_.empty()) make_test_pki(pki_, ip_);
  start();
}

Etcd::~Etcd() { stop(); }

void Etcd::start() {
  if (proc_) return;
  std::vector<std::string> argv{"etcd", "--name=udpring-test", "--data-dir=" + data_dir_,
                                "--listen-client-urls=" + endpoint(),
                                "--advertise-client-urls=" + endpoint(),
                                "--listen-peer-urls=http://127.0.0.1:2380",
                                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                                "--initial-cluster=udpring-test=http://127.0.0.1:2380",
                                "--log-level=warn"};
  if (!pki_.empty()) {
    argv.insert(argv.end(), {"--cert-file=" + pki_ + "/server.crt", "--key-file=" + pki_ + "/server.key",
                             "--trusted-ca-file=" + pki_ + "/ca.crt", "--client-cert-auth"});
  }
  proc_ = std::make_unique<Process>(ns_.name(), argv, data_dir_ + ".log" + std::to_string(starts_++));
  for (int i = 0; i < 200; ++i) {
    try {
      ctl("--dial-timeout=1s endpoint health");
      return;
    } catch (const std::exception&) {
    }
    if (!proc_->running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("etcd did not start:\n" + proc_->log());
}

void Etcd::stop() {
  if (proc_) proc_->stop(5000);
  proc_.reset();
}

std::string Etcd::ctl(const std::string& args) const {
  std::string cmd = "ip netns exec " + ns_.name() + " etcdctl --endpoints=" + endpoint();
  if (!pki_.empty()) {
    cmd += " --cacert=" + pki_ + "/ca.crt --cert=" + pki_ + "/client.crt --key=" + pki_ + "/client.key";
  }
  if (!auth_.empty()) cmd += " --user=" + auth_;
  cmd += " " + args + " 2>&1";
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) throw std::runtime_error("popen " + cmd);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  if (pclose(f) != 0) throw std::runtime_error(cmd + " failed:\n" + out);
  return out;
}

int64_t Etcd::revision() const {
  const std::string out = ctl("endpoint status -w json");
  const auto at = out.find("\"revision\":");
  if (at == std::string::npos) throw std::runtime_error("no revision in " + out);
  return std::stoll(out.substr(at + 11));
}

}  // namespace udpring::test
