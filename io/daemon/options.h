#pragma once
// udpringd's command line. Flags follow flanneld's Go flag syntax: one or two
// dashes, "--name=value" or "--name value", booleans as "--name" or
// "--name=false".

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ipv4_addr.h"
#include "encap/busy_poll_policy.h"
#include "encap/udp_decap.h"

namespace udpring::io {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct StaticPeer {
  core::Ipv4Prefix subnet;  // the peer's lease
  core::Be32 public_ip;     // where its datagrams go
};

struct Options {
  std::string subnet_mgr = "etcd";     // etcd | file | static | kube
  std::string net_config_path = "/etc/kube-flannel/net-conf.json";
  std::string lease_dir = "/var/lib/udpring/leases";  // --subnet-mgr=file
  unsigned lease_ttl_s = 86400;       // flannel's subnetTTL; shorter only for tests
  unsigned renew_margin_min = 60;     // --subnet-lease-renew-margin
  std::vector<std::string> etcd_endpoints = {"http://127.0.0.1:4001", "http://127.0.0.1:2379"};
  std::string etcd_prefix = "/coreos.com/network";
  std::string etcd_keyfile, etcd_certfile, etcd_cafile;
  std::string etcd_username, etcd_password;
  std::string kube_api_url, kubeconfig_file;  // --subnet-mgr=kube; both empty = in-cluster
  std::string kube_annotation_prefix = "flannel.alpha.coreos.com";
  bool set_node_network_unavailable = true;
  std::vector<std::string> iface_regex;
  std::optional<core::Be32> iface_can_reach;
  std::optional<core::Be32> public_ip;
  bool ip_masq = false;
  bool ip_masq_random_fully_disable = false;
  unsigned iptables_resync_s = 5;
  bool iptables_forward_rules = true;
  std::optional<core::Ipv4Prefix> static_subnet;
  std::vector<StaticPeer> static_peers;
  std::vector<std::string> ifaces;
  std::string tun_name = "flannel0";
  std::string subnet_file = "/run/flannel/subnet.env";  // "" = do not write one
  unsigned workers = 0;               // 0 = default_workers(online CPUs)
  uint32_t tun_txqueuelen = 4000;
  bool keep_tun = false;              // TUNSETPERSIST: the TUN outlives udpringd
  bool multishot = true;
  encap::PeerCheck peer_check = encap::PeerCheck::kStrict;
  bool icmp_time_exceeded = true;     // answer an expired TTL with ICMP Time Exceeded
  unsigned icmp_rate = 10;            // ICMP errors per second per offender source (0 = no limit)
  unsigned icmp_burst = 10;           // ... and at most this many at once
  bool trust_outer_checksum = true;
  bool gso = true;
  bool gro = true;
  bool tun_offload = true;
  bool coalesce = true;
  bool uso = true;
  bool source_port_spread = true;     // with 2+ workers, each sends from its own port
  bool port_steering = true;          // with 2+ workers, sender port picks the worker
  bool tun_steering = true;           // with 2+ workers, new flows take the TUN queues in turn
  std::vector<int> cpu_affinity;      // worker i runs on cpu_affinity[i % size]
  unsigned ring_entries = 1024;       // SQ entries per worker ring
  unsigned batch = 64;                // packets per encap/decap call
  unsigned buffers = 0;               // per buffer ring; 0 = automatic
  unsigned buffer_size = 0;           // bytes per buffer; 0 = automatic
  unsigned socket_rcvbuf = 4u << 20;
  unsigned socket_sndbuf = 4u << 20;
  unsigned busy_poll_us = 100;        // spin window; 0 = never spin
  encap::BusyPollMode busy_poll_mode = encap::BusyPollMode::kCheap;  // auto
  bool sqpoll = false;
  bool send_zc = false;
  bool print_config = false;
  std::vector<std::string> unimplemented;  // flanneld flags given but not implemented
  core::Be32 healthz_ip;          // 0.0.0.0 as flanneld
  uint16_t healthz_port = 0;      // 0 = no health/metrics endpoint
  int verbosity = 0;
  bool help = false;
  bool help_markdown = false;
  bool version = false;
};

/// Looks up an environment variable; nullptr when unset.
using EnvLookup = std::function<const char*(const char*)>;

/// Parses argv like flanneld: a flag given on the command line wins, else a
/// non-empty FLANNELD_<NAME> variable (upper case, '-' and '.' as '_') is
/// used. flanneld flags that udpringd does not implement yet are accepted
/// and listed in Options::unimplemented, so the daemon can warn about each.
/// Throws UsageError naming the flag (or variable) and the bad value.
Options parse_options(int argc, const char* const* argv, const EnvLookup& env = std::getenv);

/// The --help text: every flag with its default and meaning.
std::string usage_text();

/// docs/flags.md, which --help-markdown prints: every flag with what it
/// accepts, its default, its FLANNELD_* variable and its meaning.
std::string flags_markdown();

/// The buffers of each worker's two rings, for the paths in use.
struct BufferPlan {
  uint32_t tun_count, udp_count;  // buffers per ring
  uint32_t tun_bytes, udp_bytes;  // bytes per buffer
  uint32_t tun_need, udp_need;    // the least a buffer must hold
};
/// --buffers / --buffer-size, or, left at 0 (auto), sized for what a read
/// can bring: 64 KiB with TUN offload (`vnet`) or UDP GRO, else one packet
/// of `tun_mtu` rounded up to a power of two.
BufferPlan plan_buffers(const Options& o, bool vnet, bool gro, uint32_t tun_mtu);

/// The worker count --workers=0 gives: one per online CPU, at most
/// kDefaultMaxWorkers. Each worker holds its own buffers (about 10 MiB at
/// peak with offloads), so without a cap a 64-core node would give the
/// network daemon 64 workers' memory whatever its traffic; --workers=N
/// sets any count.
inline constexpr unsigned kDefaultMaxWorkers = 4;
unsigned default_workers(unsigned online_cpus);
unsigned resolved_workers(const Options& o, unsigned online_cpus);

/// Every effective setting, one "name: value" per line, for --print-config.
/// `online_cpus` resolves --workers=0.
std::string describe_options(const Options& o, unsigned online_cpus);

}  // namespace udpring::io
