#pragma once
// A cluster of udpringd nodes for the control-plane tests: N node namespaces
// on one underlay bridge (in a "lan" namespace, which can also host etcd),
// each node with a pod namespace wired the way flannel's CNI plugin does it,
// from the subnet.env the daemon wrote.
//
//   lan [br0 192.168.78.1/24, etcd on 192.168.78.1:2379]
//     |-- vN --- u0 192.168.78.(10+N)/24  node N  [flannel0]
//                                           vp  S.1/len
//                                            |
//                                   pod N: eth0 S.2/len, default via S.1
//
// Everything is torn down by the destructors, also when a test fails.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/netns.h"

namespace udpring::test {

class Cluster {
 public:
  /// `network`: the overlay for the net-conf written to dir/net-conf.json.
  explicit Cluster(int nodes, const std::string& network = "10.60.0.0/16");
  ~Cluster();

  /// Adds one more node on the bridge; returns its index.
  int add_node();
  const Netns& node(int i) const { return *nodes_.at(i); }
  int size() const { return static_cast<int>(nodes_.size()); }
  static std::string node_ip(int i) { return "192.168.78." + std::to_string(10 + i); }

  /// Creates node i's pod from the daemon's subnet.env (path), as the CNI
  /// plugin would: returns the pod's address (lease base + 2).
  std::string add_pod(int i, const std::string& subnet_env);
  const Netns& pod(int i) const { return *pods_.at(i); }

  /// The file store's directory (dir/leases, with the net-conf as its config).
  std::string lease_dir() const { return dir + "/leases"; }
  /// Where node i's daemon started by start_on_file_store writes subnet.env.
  std::string subnet_env(int i) const { return dir + "/subnet-" + std::to_string(i) + ".env"; }
  /// Starts udpringd on node i on the file store (--iface=u0, subnet.env at
  /// subnet_env(i), `extra` flags after) and waits until it is ready; a
  /// daemon that is not fails the test (ADD_FAILURE) with its log.
  std::unique_ptr<Process> start_on_file_store(int i, const std::vector<std::string>& extra = {});

  /// A key of a subnet.env (FLANNEL_SUBNET gives "10.60.3.1/24"), "" if absent.
  static std::string env_value(const std::string& subnet_env, const std::string& key);
  /// The lease a subnet.env names: "10.60.3.0/24" from FLANNEL_SUBNET=10.60.3.1/24.
  static std::string lease_from_env(const std::string& subnet_env);
  /// One ping from namespace `from` to `ip` (1 s timeout).
  static bool ping(const Netns& from, const std::string& ip);
  /// Pings until one answers; false if none did within `ms`.
  static bool reachable_within(const Netns& from, const std::string& ip, int ms);

  std::string prefix;
  std::string dir;       // scratch directory, removed at the end
  std::string net_conf;  // {"Network": network, Backend udp 8285}
  Netns lan;

 private:
  std::vector<std::unique_ptr<Netns>> nodes_;
  std::vector<std::unique_ptr<Netns>> pods_;
  int starts_ = 0;
};

/// A CA (ca.crt, ca.key) and a server and a client certificate signed by
/// it (server.crt/.key with subjectAltName IP:ip and 127.0.0.1,
/// client.crt/.key), made in `dir` with openssl.
void make_test_pki(const std::string& dir, const std::string& ip);

/// Debian's etcd-server inside namespace `ns` on ip:2379 (peer URL on the
/// namespace's loopback), with a temporary data directory. With `pki_dir`,
/// a CA, a server and a client certificate are made there with openssl and
/// etcd serves https and requires client certificates.
class Etcd {
 public:
  Etcd(const Netns& ns, std::string ip, std::string data_dir, std::string pki_dir = "");
  ~Etcd();
  /// Starts (again, with the same data) and waits until it answers.
  void start();
  /// Stops it (SIGTERM); the data stays.
  void stop();
  std::string endpoint() const { return (pki_.empty() ? "http://" : "https://") + ip_ + ":2379"; }
  /// etcdctl logs in as "user:password" from now on.
  void set_auth(const std::string& user_password) { auth_ = user_password; }
  /// Runs `etcdctl ARGS` against it; returns stdout, throws on failure.
  std::string ctl(const std::string& args) const;
  /// The current revision.
  int64_t revision() const;

 private:
  const Netns& ns_;
  std::string ip_;
  std::string data_dir_;
  std::string pki_;
  std::string auth_;
  std::unique_ptr<Process> proc_;
  int starts_ = 0;
};

}  // namespace udpring::test
