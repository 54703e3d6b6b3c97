#include "io/daemon/daemon.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <system_error>
#include <thread>
#include <vector>

#include "core/lease.h"
#include "core/net_config.h"
#include "core/peer_routes.h"
#include "core/qsbr.h"
#include "core/route_table.h"
#include "core/subnet_env.h"
#include "core/worker_stats.h"
#include "io/control/leases/etcd_lease_store.h"
#include "io/control/fast_paths.h"
#include "io/control/leases/file_lease_store.h"
#include "io/control/file_util.h"
#include "io/control/http_server.h"
#include "io/control/iptables_rules.h"
#include "io/netlink/netlink.h"
#include "io/kernel/nic_features.h"
#include "io/kernel/port_steering.h"
#include "io/kernel/self_test.h"
#include "io/kernel/tun_device.h"
#include "io/kernel/tun_steering.h"
#include "io/kernel/udp_socket.h"
#include "io/dataplane/worker.h"

namespace udpring::io {
namespace {

// flannel's encapOverhead: outer IPv4 header (20) + UDP header (8).
constexpr uint32_t kEncapOverhead = 28;
constexpr uint32_t kMinTunMtu = 576;

core::NetConfig load_net_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read net-conf " + path + ": " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  try {
    return core::parse_net_config(text.str());
  } catch (const core::ConfigError& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

std::unique_ptr<LeaseStore> make_lease_store(const Options& opts) {
  const int64_t margin_s = int64_t{opts.renew_margin_min} * 60;
  if (opts.subnet_mgr == "file") {
    return std::make_unique<FileLeaseStore>(opts.lease_dir, opts.net_config_path, opts.lease_ttl_s,
                                            margin_s);
  }
  if (opts.subnet_mgr == "etcd") {
    EtcdConfig cfg{opts.etcd_endpoints, opts.etcd_cafile,   opts.etcd_certfile,
                   opts.etcd_keyfile,   opts.etcd_username, opts.etcd_password};
    return std::make_unique<EtcdLeaseStore>(std::move(cfg), opts.etcd_prefix, opts.lease_ttl_s,
                                            margin_s);
  }
  if (opts.subnet_mgr == "kube") {
    throw std::runtime_error(
        "--subnet-mgr=kube (--kube-subnet-mgr) is not implemented yet; use etcd, file or static");
  }
  throw std::runtime_error("--subnet-mgr=" + opts.subnet_mgr + " is not available");
}

// flanneld retries the config (and the lease) every second until they
// work; so do we, for whatever a lease store may fail with for a while
// (Error), and give up only when told to stop: false on SIGINT/SIGTERM.
// Each distinct error is logged once.
template <class Error, class Attempt>
bool retry_every_second(const sigset_t& sigs, std::string_view what, Attempt&& attempt) {
  std::string last_error;
  for (;;) {
    try {
      attempt();
      return true;
    } catch (const Error& e) {
      if (e.what() != last_error) spdlog::error("{}: {}; retrying every second", what, e.what());
      last_error = e.what();
    }
    const timespec second{1, 0};
    const int sig = sigtimedwait(&sigs, nullptr, &second);
    if (sig == SIGINT || sig == SIGTERM) return false;
  }
}

std::optional<core::Ipv4Prefix> previous_subnet(const std::string& subnet_file) {
  if (subnet_file.empty()) return std::nullopt;
  std::ifstream in(subnet_file);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return core::parse_subnet_env(text.str()).subnet;
}

std::vector<core::Route> static_routes(const Options& opts, const core::NetConfig& net,
                                       const core::Ipv4Prefix& own) {
  std::vector<core::Route> routes;
  for (const StaticPeer& p : opts.static_peers) {
    const std::string name = core::format_prefix(p.subnet);
    if (!net.network.contains(p.subnet)) {
      throw std::runtime_error("--static-peer " + name + " is outside Network " +
                               core::format_prefix(net.network));
    }
    if (p.subnet == own) {
      spdlog::warn("--static-peer {} is this node's own lease; ignored (flannel skips its own lease)",
                   name);
      continue;
    }
    routes.push_back({p.subnet, {p.public_ip, htons(net.port)}});
  }
  return routes;
}

// Prometheus text for /metrics. Drop counters become one family labelled by
// reason; the errno gauge stays a gauge.
std::string render_metrics(const std::vector<std::unique_ptr<core::WorkerStats>>& stats,
                           size_t routes, uint64_t iptables_rebuilds,
                           const std::optional<LeaseStoreStatus>& lease,
                           const TunSteering* tun_steering,
                           const std::vector<FastPath>& fast_paths) {
  std::vector<const core::WorkerStats*> ptrs;
  for (const auto& s : stats) ptrs.push_back(s.get());
  const core::StatsTotals t = core::sum_stats(ptrs);
  std::string out;
  // One unlabelled metric family: HELP, TYPE and the sample.
  auto family = [&out](const char* name, const char* type, const char* help, uint64_t value) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
    out.append(name).append(" ").append(std::to_string(value)).append("\n");
  };
  out += "# HELP udpring_build_info udpringd version.\n# TYPE udpring_build_info gauge\n";
  out += std::string("udpring_build_info{version=\"") + UDPRING_VERSION + "\"} 1\n";
  family("udpring_workers", "gauge", "Forwarding workers.", stats.size());
  family("udpring_routes", "gauge", "Peer routes installed.", routes);
  family("udpring_iptables_rebuilds_total", "counter",
         "Rule sets rebuilt after a rule went missing.", iptables_rebuilds);
  out += render_fast_paths(fast_paths);
  if (tun_steering) {
    family("udpring_tun_flows_placed_total", "counter",
           "Flows the TUN steering program placed on the next queue in turn.",
           tun_steering->flows_placed());
  }
  if (lease) {
    family("udpring_lease_expiry_timestamp_seconds", "gauge",
           "When our lease expires, in Unix seconds (0: never, a reservation).",
           static_cast<uint64_t>(std::max<int64_t>(0, lease->own_expiry_unix)));
    family("udpring_lease_renewals_total", "counter", "Renewals of our lease.", lease->renewals);
    family("udpring_lease_renew_failures_total", "counter", "Renewals that failed (retried).",
           lease->renew_failures);
    family("udpring_lease_watch_reconnects_total", "counter",
           "Lease watch streams re-established after an error.", lease->watch_reconnects);
    family("udpring_lease_relists_total", "counter",
           "Full lease re-lists (after an etcd compaction).", lease->relists);
    family("udpring_lease_watch_connected", "gauge", "1 while the lease watch is connected.",
           lease->watch_connected ? 1 : 0);
  }
  out += "# HELP udpring_drops_total Packets dropped, by reason.\n# TYPE udpring_drops_total counter\n";
  for (size_t i = 0; i < core::kCounterCount; ++i) {
    const std::string_view name = core::kCounterNames[i];
    if (name.substr(0, 5) == "drop_") {
      out.append("udpring_drops_total{reason=\"").append(name.substr(5)).append("\"} ");
      out += std::to_string(t.values[i]) + "\n";
    }
  }
  for (size_t i = 0; i < core::kCounterCount; ++i) {
    const std::string_view name = core::kCounterNames[i];
    if (name.substr(0, 5) == "drop_") continue;
    const bool gauge = i == static_cast<size_t>(core::Counter::kLastSendErrno);
    std::string metric = "udpring_" + std::string(name) + (gauge ? "" : "_total");
    out += "# TYPE " + metric + (gauge ? " gauge\n" : " counter\n");
    out += metric + " " + std::to_string(t.values[i]) + "\n";
  }
  // Per worker, the counters that show how traffic spreads over them.
  for (const core::Counter c : {core::Counter::kTunRxPackets, core::Counter::kUdpTxPackets,
                                core::Counter::kUdpRxPackets}) {
    const std::string metric =
        "udpring_worker_" + std::string(core::kCounterNames[static_cast<size_t>(c)]) + "_total";
    out += "# TYPE " + metric + " counter\n";
    for (size_t w = 0; w < stats.size(); ++w) {
      out += metric + "{worker=\"" + std::to_string(w) + "\"} " +
             std::to_string(stats[w]->get(c)) + "\n";
    }
  }
  return out;
}

// systemd's readiness protocol (sd_notify without libsystemd): one datagram
// "READY=1" to the AF_UNIX socket named by $NOTIFY_SOCKET ('@' = abstract).
void notify_systemd_ready() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof sa.sun_path) {
    spdlog::warn("NOTIFY_SOCKET {} is too long; systemd not notified", path);
    return;
  }
  std::memcpy(sa.sun_path, path, len);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';
  core::UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const char msg[] = "READY=1";
  if (!fd || sendto(fd.get(), msg, sizeof msg - 1, 0, reinterpret_cast<sockaddr*>(&sa),
                    static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len)) < 0) {
    spdlog::warn("cannot notify systemd at {}: {}", path, std::strerror(errno));
  }
}

void log_stats(const std::vector<std::unique_ptr<core::WorkerStats>>& stats, const char* when) {
  std::vector<const core::WorkerStats*> ptrs;
  for (const auto& s : stats) ptrs.push_back(s.get());
  spdlog::info("stats ({}): {}", when, core::format_stats(core::sum_stats(ptrs)));
}

// The sockets of the workers: one per worker in a SO_REUSEPORT group on
// Backend.Port, and with 2+ workers one per worker to send from (see
// io/kernel/port_steering.h for why and how they are numbered).
struct WorkerSockets {
  std::vector<core::UniqueFd> udp;
  std::vector<core::UniqueFd> send;  // empty fds: send from `udp`
  bool steered = false;              // the port steering program is attached
};

WorkerSockets open_worker_sockets(const Options& opts, core::Be32 addr, uint16_t port,
                                  unsigned n_workers) {
  WorkerSockets s;
  s.send.resize(n_workers);
  const int rcvbuf = static_cast<int>(opts.socket_rcvbuf);
  const int sndbuf = static_cast<int>(opts.socket_sndbuf);
  // A daemon that just exited may still hold its sockets, and ours would
  // join its SO_REUSEPORT group silently: wait until a plain bind works,
  // so that the group is new and socket i is worker i's.
  if (n_workers > 1) (void)open_udp_socket({addr, port, false, 0, 0});
  for (unsigned i = 0; i < n_workers; ++i) {
    s.udp.push_back(open_udp_socket({addr, port, n_workers > 1, rcvbuf, sndbuf}));
  }
  // All traffic between two nodes would otherwise be one UDP 4-tuple, which
  // a SO_REUSEPORT group cannot spread.
  const bool spread = opts.source_port_spread && n_workers > 1;
  const bool steer = opts.port_steering && n_workers > 1;
  std::string receive_by = "the kernel's hash of the sender's address and port";
  if (steer) {
    if (const int err = attach_port_steering(s.udp[0].get(), n_workers); err != 0) {
      spdlog::warn("port steering off: SO_ATTACH_REUSEPORT_CBPF failed ({}); the kernel's hash "
                   "picks the receiving worker, which may put every peer on one worker",
                   std::strerror(err));
    } else {
      receive_by = "the sender's source port";
      s.steered = true;
    }
  }
  std::string send_from = "Backend.Port";
  if (spread && steer) {
    std::vector<core::UniqueFd> fds = open_steered_send_sockets(addr, n_workers, sndbuf);
    if (fds.empty()) {
      spdlog::warn("no run of {} free UDP ports on {} to send from; sending from ports the "
                   "kernel picks, which the peer's workers cannot tell apart",
                   n_workers, core::format_ipv4(addr));
    } else {
      send_from = "ports " + std::to_string(bound_port(fds.front().get())) + "+worker";
      s.send = std::move(fds);
    }
  }
  if (spread && !s.send[0]) {
    for (unsigned i = 0; i < n_workers; ++i) {  // port 0: the kernel picks
      s.send[i] = open_udp_socket({addr, 0, false, 0, sndbuf});
    }
    send_from = "a port of its own per worker";
  }
  spdlog::info("UDP {}:{} ({} socket(s); sending from {}{})", core::format_ipv4(addr), port,
               n_workers, send_from,
               n_workers > 1 ? "; receiving worker chosen by " + receive_by : std::string());
  return s;
}

}  // namespace

int run_daemon(const Options& opts) {
  // Block the signals we handle before any thread exists, so every thread
  // inherits the mask and only sigtimedwait below ever sees them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  for (const std::string& flag : opts.unimplemented) {
    spdlog::warn("{}: a flanneld flag udpringd does not implement yet; ignored", flag);
  }
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<core::WorkerStats>> stats;
  std::unique_ptr<core::Qsbr> qsbr;
  std::unique_ptr<core::RouteTable> table;
  std::unique_ptr<LeaseStore> store_owner;
  std::unique_ptr<core::PeerRoutes> peer_routes;
  std::unique_ptr<IptablesManager> iptables;
  std::unique_ptr<TunSteering> tun_steering;  // with 2+ workers, unless off or refused
  std::vector<FastPath> fast_paths;
  // What the HTTP thread may read: set (release) once `stats`,
  // `tun_steering` and `fast_paths` are complete.
  std::atomic<bool> running{false};
  std::atomic<size_t> route_count{0};
  std::atomic<uint64_t> iptables_rebuilds{0};
  // The lease store's health as last seen by the control thread.
  std::mutex lease_status_mu;
  std::optional<LeaseStoreStatus> lease_status;
  auto publish_store_status = [&](const LeaseStoreStatus& st) {
    std::lock_guard lock(lease_status_mu);
    lease_status = st;
  };
  std::unique_ptr<HttpServer> http;
  auto stop_workers = [&] {
    stop.store(true, std::memory_order_relaxed);
    for (auto& t : threads) t.join();
    threads.clear();
  };

  try {
    if (opts.healthz_port) {
      http = std::make_unique<HttpServer>(opts.healthz_ip, opts.healthz_port, [&]() -> std::string {
        if (!running.load(std::memory_order_acquire)) return "# udpringd is starting\n";
        std::optional<LeaseStoreStatus> lease;
        {
          std::lock_guard lock(lease_status_mu);
          lease = lease_status;
        }
        return render_metrics(stats, route_count.load(std::memory_order_relaxed),
                              iptables_rebuilds.load(std::memory_order_relaxed), lease,
                              tun_steering.get(), fast_paths);
      });
      spdlog::info("health and metrics on {}:{} (/healthz, /readyz, /metrics)",
                   core::format_ipv4(opts.healthz_ip), http->port());
    }
    const bool static_mode = opts.subnet_mgr == "static";
    if (!static_mode && (opts.static_subnet || !opts.static_peers.empty())) {
      throw std::runtime_error("--static-subnet and --static-peer need --subnet-mgr=static");
    }
    std::unique_ptr<LeaseStore>& store = store_owner;
    core::NetConfig net;
    if (static_mode) {
      net = load_net_config(opts.net_config_path);
    } else {
      store = make_lease_store(opts);
      spdlog::info("lease store: {}", store->describe());
      const bool got = retry_every_second<std::exception>(sigs, "network config", [&] {
        try {
          net = core::parse_net_config(store->read_config());
        } catch (const core::ConfigError& e) {
          throw core::ConfigError("from " + store->describe() + ": " + e.what());
        }
      });
      if (!got) return 0;  // stopped while waiting for a config
    }
    spdlog::info("network {}, /{} leases from {} to {}, UDP port {}",
                 core::format_prefix(net.network), net.subnet_len,
                 core::format_ipv4(net.subnet_min), core::format_ipv4(net.subnet_max), net.port);

    const ExternalInterface ext = find_external_interface(
        IfaceSelection{opts.ifaces, opts.iface_regex, opts.iface_can_reach, opts.public_ip});
    if (ext.mtu < kMinTunMtu + kEncapOverhead) {
      throw std::runtime_error("interface " + ext.name + " MTU " + std::to_string(ext.mtu) +
                               " is too small for a " + std::to_string(kMinTunMtu) + "-byte TUN MTU");
    }
    const core::Be32 public_ip = ext.public_ip;
    spdlog::info("external interface {} (index {}), address {}, MTU {}, public IP {}", ext.name,
                 ext.ifindex, core::format_ipv4(ext.addr), ext.mtu, core::format_ipv4(public_ip));
    if (opts.gso && nic_feature_active(ext.name, "tx-udp-segmentation") == false) {
      // Still correct, only dearer: the kernel cuts each GSO send into
      // datagrams in software before the device (bench: ~20 % more CPU per GB).
      spdlog::info("{} has no UDP segmentation offload (tx-udp-segmentation off): the kernel "
                   "segments UDP GSO sends in software; if the device supports it, "
                   "`ethtool -K {} tx-udp-segmentation on` saves that CPU",
                   ext.name, ext.name);
    }

    core::Ipv4Prefix own;
    if (static_mode) {
      if (!opts.static_subnet) {
        throw std::runtime_error("--subnet-mgr=static needs --static-subnet (this node's lease)");
      }
      own = *opts.static_subnet;
      if (!net.network.contains(own)) {
        throw std::runtime_error("--static-subnet " + core::format_prefix(own) +
                                 " is outside Network " + core::format_prefix(net.network));
      }
    } else {
      const auto previous = previous_subnet(opts.subnet_file);
      if (previous) {
        spdlog::info("{} names a previous lease {}", opts.subnet_file,
                     core::format_prefix(*previous));
      }
      // etcd may be down for a moment (a restart, a leader election): keep
      // trying, as for the config, until it answers or we are told to stop.
      if (!retry_every_second<EtcdError>(sigs, "acquiring a lease", [&] {
            own = store->acquire(net, public_ip, previous).subnet;
          })) {
        return 0;
      }
    }
    const uint32_t tun_mtu = ext.mtu - kEncapOverhead;

    const unsigned n_workers =
        opts.workers ? opts.workers : std::max(1u, std::thread::hardware_concurrency());

    std::vector<core::UniqueFd> tun_fds;
    bool vnet = opts.tun_offload;
    tun_fds.push_back(open_tun_queue(opts.tun_name, vnet));
    bool uso = false;
    if (vnet) {
      const TunOffload off = enable_tun_offload(tun_fds[0].get(), opts.uso);
      uso = off.uso;
      if (!off.ok) {
        // Re-create the device without the vnet header rather than run with
        // a header but no offloads.
        spdlog::warn("{}; TUN offload off, one packet per read and write", off.error);
        tun_fds.clear();
        vnet = false;
        tun_fds.push_back(open_tun_queue(opts.tun_name, false));
      }
    }
    for (unsigned i = 1; i < n_workers; ++i) tun_fds.push_back(open_tun_queue(opts.tun_name, vnet));
    std::string queue_by = "the TUN's flow hash";  // what places a flow on a queue
    if (opts.tun_steering && n_workers > 1) {
      try {
        auto prog = std::make_unique<TunSteering>();
        if (const int err = prog->attach(tun_fds[0].get()); err != 0) {
          throw std::system_error(err, std::generic_category(), "TUNSETSTEERINGEBPF");
        }
        tun_steering = std::move(prog);
        queue_by = "a steering program, new ones in turn";
      } catch (const std::system_error& e) {
        spdlog::warn("TUN steering off: {}; the TUN's flow hash spreads flows over the workers, "
                     "unevenly at times",
                     e.what());
      }
    }
    for (const std::string& failure : tune_tun_sysctls(opts.tun_name)) {
      spdlog::warn("{}: ICMP replies or IPv6 suppression on {} may not work", failure,
                   opts.tun_name);
    }
    configure_tun({opts.tun_name, own.network, tun_mtu, opts.tun_txqueuelen, net.network});
    bool coalesce = opts.coalesce;
    bool coalesce_udp = uso;
    if (vnet && coalesce) {
      // Coalesced writes are GSO packets; make sure this kernel takes them.
      for (const bool udp : {false, true}) {
        if (udp && !uso) continue;
        const SelfTest t = self_test_tun_gso_write(tun_fds[0].get(), own.network.raw, udp);
        const char* what = udp ? "UDP" : "TCP";
        if (t.result == SelfTestResult::kPassed) {
          spdlog::info("TUN {} GSO write self-test passed", what);
        } else {
          spdlog::warn("TUN {} GSO write self-test failed ({}); {} coalescing off", what, t.detail, what);
          (udp ? coalesce_udp : coalesce) = false;
        }
      }
    }
    spdlog::info("TUN {}: {} queue(s){}, address {}/32, MTU {}, route {} dev {}", opts.tun_name,
                 n_workers, n_workers > 1 ? " (flows placed by " + queue_by + ")" : std::string(),
                 core::format_ipv4(own.network), tun_mtu, core::format_prefix(net.network),
                 opts.tun_name);

    WorkerSockets socks = open_worker_sockets(opts, ext.addr, net.port, n_workers);

    qsbr = std::make_unique<core::Qsbr>(n_workers);
    table = std::make_unique<core::RouteTable>(*qsbr);
    peer_routes = std::make_unique<core::PeerRoutes>(*table, own, public_ip, net.port);
    if (static_mode) {
      core::LeaseUpdate update;
      update.reset = true;
      for (const core::Route& r : static_routes(opts, net, own)) {
        update.leases.push_back({r.prefix, r.hop.addr, "", 0, 0, false});
      }
      update.leases.push_back({own, public_ip, "", 0, 0, false});
      peer_routes->apply(update);
    } else {
      // The first batch is the snapshot: every peer is routed before the
      // first packet is forwarded.
      core::LeaseUpdate update;
      if (!retry_every_second<EtcdError>(sigs, "listing leases", [&] {
            store->wait_update(std::chrono::milliseconds(0), update);
          })) {
        return 0;
      }
      const core::PeerRoutes::Result r = peer_routes->apply(update);
      if (!r.own_lost.empty()) throw std::runtime_error(r.own_lost + " right after acquiring it");
    }

    bool gso = opts.gso;
    if (gso) {
      const SelfTest t = self_test_udp_gso();
      if (t.result == SelfTestResult::kFailed) {
        spdlog::warn("UDP GSO self-test failed ({}); sending one datagram per sendmsg", t.detail);
        gso = false;
      } else {
        spdlog::info("UDP GSO self-test {}: {}",
                     t.result == SelfTestResult::kPassed ? "passed" : "skipped", t.detail);
      }
    }

    WorkerOptions wopts;
    wopts.ring_entries = opts.ring_entries;
    wopts.batch = opts.batch;
    const BufferPlan bufs = plan_buffers(opts, vnet, opts.gro, tun_mtu);
    if (opts.buffer_size && opts.buffer_size < std::max(bufs.tun_need, bufs.udp_need)) {
      throw std::runtime_error(
          "--buffer-size " + std::to_string(opts.buffer_size) + " is too small: " +
          std::to_string(std::max(bufs.tun_need, bufs.udp_need)) + " bytes are needed for " +
          (vnet || opts.gro ? "64 KiB TUN offload / UDP GRO packets (or pass --no-tun-offload --no-gro)"
                            : "the TUN MTU plus the receive header"));
    }
    // 64 KiB buffers (plus 16 KiB of split headers per TUN buffer with
    // offload): cap the count so a typo cannot ask for gigabytes.
    if (opts.buffers > 4096 && (vnet || opts.gro)) {
      throw std::runtime_error("--buffers " + std::to_string(opts.buffers) +
                               " is too many 64 KiB buffers (at most 4096 per ring with TUN "
                               "offload or UDP GRO; each ring would take " +
                               std::to_string(uint64_t{opts.buffers} * 80 / 1024) + " MiB)");
    }
    wopts.tun_buf_bytes = bufs.tun_bytes;
    wopts.udp_buf_bytes = bufs.udp_bytes;
    wopts.tun_buffers = bufs.tun_count;
    wopts.udp_buffers = bufs.udp_count;
    wopts.tun_offload = vnet;
    wopts.coalesce = coalesce;
    wopts.uso = uso;
    wopts.coalesce_udp = coalesce_udp;
    wopts.gso = gso;
    wopts.gro = opts.gro;
    wopts.multishot = opts.multishot;
    wopts.peer_check = opts.peer_check;
    wopts.trust_outer_checksum = opts.trust_outer_checksum;
    wopts.tun_addr = own.network;
    wopts.sqpoll = opts.sqpoll;
    wopts.busy_poll_us = opts.busy_poll_us;
    wopts.busy_poll_auto = opts.busy_poll_auto;
    wopts.send_zc = opts.send_zc;
    for (unsigned i = 0; i < n_workers; ++i) {
      WorkerOptions w = wopts;
      if (!opts.cpu_affinity.empty()) w.cpu = opts.cpu_affinity[i % opts.cpu_affinity.size()];
      stats.push_back(std::make_unique<core::WorkerStats>());
      workers.push_back(std::make_unique<Worker>(i, std::move(tun_fds[i]), std::move(socks.udp[i]),
                                                 std::move(socks.send[i]), *table, *qsbr,
                                                 *stats.back(), stop, w));
    }
    for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

    // Setup inside the workers (rings, buffer registration) can still fail.
    for (auto& w : workers) {
      while (w->state() == WorkerState::kStarting) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (w->state() == WorkerState::kFailed) {
        throw std::runtime_error("worker setup failed: " + w->error());
      }
    }
    spdlog::info("{} worker(s) forwarding: {}", n_workers, workers.front()->fast_paths_text());
    // Every worker asks its kernel the same; the first speaks for all.
    const FastPaths& got = workers.front()->fast_paths();
    if (opts.sqpoll && !got.sqpoll) {
      spdlog::warn("--sqpoll: the kernel refused IORING_SETUP_SQPOLL; workers submit their own "
                   "requests");
    }
    if (opts.multishot && !got.multishot) {
      spdlog::warn("this kernel has no IORING_OP_READ_MULTISHOT (Linux 6.7+); the TUN is read "
                   "with plain reads");
    }
    if (opts.gro && !got.gro) {
      spdlog::warn("the kernel refused UDP_GRO (Linux 5.0+); one datagram per receive");
    }
    if (opts.send_zc && !got.send_zc) {
      spdlog::warn("--send-zc: this kernel has no IORING_OP_SENDMSG_ZC (Linux 6.1+); sends are "
                   "copied");
    }
    const bool many = n_workers > 1;
    const bool offload = opts.tun_offload;
    fast_paths = {
        {"tun_offload", offload, vnet},
        {"uso", offload && opts.uso, vnet && uso},
        {"tcp_coalesce", offload && opts.coalesce, vnet && coalesce},
        {"udp_coalesce", offload && opts.uso && opts.coalesce, vnet && coalesce && coalesce_udp},
        {"gso", opts.gso, gso},
        {"gro", opts.gro, got.gro},
        {"multishot_read", opts.multishot, got.multishot},
        {"send_zc", opts.send_zc, got.send_zc},
        {"sqpoll", opts.sqpoll, got.sqpoll},
        {"port_steering", opts.port_steering && many, socks.steered},
        {"tun_steering", opts.tun_steering && many, tun_steering != nullptr},
    };
    // flannel's order: masquerade rules, then forward rules, then subnet.env.
    std::vector<RuleSet> rule_sets;
    if (opts.ip_masq) {
      const bool random_fully = !opts.ip_masq_random_fully_disable && iptables_supports_random_fully();
      rule_sets.push_back(masq_rules(net.network, own, random_fully));
    }
    if (opts.iptables_forward_rules) rule_sets.push_back(forward_rules(net.network));
    if (!rule_sets.empty()) {
      iptables = std::make_unique<IptablesManager>(std::move(rule_sets));
      try {
        iptables->apply();
      } catch (const std::exception& e) {
        throw std::runtime_error(std::string("installing iptables rules: ") + e.what() +
                                 " (install iptables, or pass --iptables-forward-rules=false"
                                 " and no --ip-masq)");
      }
      spdlog::info("iptables: {}{}, re-checked every {} s",
                   opts.ip_masq ? "masquerade rules (FLANNEL-POSTRTG)" : "",
                   opts.iptables_forward_rules
                       ? std::string(opts.ip_masq ? " and " : "") + "forward rules (FLANNEL-FWD)"
                       : std::string(),
                   opts.iptables_resync_s);
    }
    if (!opts.subnet_file.empty()) {
      // After setup, before "ready": the CNI plugin sizes the bridge from it.
      write_file_atomic(opts.subnet_file, core::format_subnet_env({net.network, own, tun_mtu, opts.ip_masq}),
                        0644);
      spdlog::info("wrote {}", opts.subnet_file);
    }
    route_count.store(peer_routes->route_count(), std::memory_order_relaxed);
    if (store) publish_store_status(store->status());
    running.store(true, std::memory_order_release);
    if (http) http->set_ready();
    notify_systemd_ready();
    spdlog::info("udpringd ready: lease {}, {} peer route(s)", core::format_prefix(own),
                 peer_routes->route_count());
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    stop_workers();
    return 1;
  }

  int exit_code = 0;
  LeaseStore* store = store_owner.get();
  auto next_resync = std::chrono::steady_clock::now() + std::chrono::seconds(opts.iptables_resync_s);
  const timespec no_wait{0, 0};
  const timespec tick{1, 0};
  RuntimeFallbackLog fallbacks(workers.size());
  // Nothing the control plane throws may skip stopping the workers.
  try {
    for (;;) {
      // The control thread's one loop: lease events (or a 1 s tick in static
      // mode), signals, renewal, snapshot reclamation.
      if (store) {
        core::LeaseUpdate update;
        std::string lost;
        auto wait = std::chrono::milliseconds(250);
        while (lost.empty() && store->wait_update(wait, update)) {
          wait = std::chrono::milliseconds(0);  // drain what is queued, then tick
          lost = peer_routes->apply(update).own_lost;
        }
        route_count.store(peer_routes->route_count(), std::memory_order_relaxed);
        if (!lost.empty()) {
          spdlog::critical("{}: lease has been revoked, shutting down (as flanneld)", lost);
          exit_code = 1;
          break;
        }
        store->maintain();
        publish_store_status(store->status());
      }
      const int sig = sigtimedwait(&sigs, nullptr, store ? &no_wait : &tick);
      if (sig == SIGUSR1) {
        log_stats(stats, "SIGUSR1");
      } else if (sig == SIGINT || sig == SIGTERM) {
        spdlog::info("{} received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
      }
      bool failed = false;
      for (auto& w : workers) {
        if (w->state() == WorkerState::kFailed) {
          spdlog::critical("worker failed: {}", w->error());
          failed = true;
        }
      }
      if (failed) {
        exit_code = 1;
        break;
      }
      if (iptables && std::chrono::steady_clock::now() >= next_resync) {
        next_resync = std::chrono::steady_clock::now() + std::chrono::seconds(opts.iptables_resync_s);
        try {
          iptables->resync();  // logs what was missing when it rebuilds
        } catch (const std::exception& e) {
          spdlog::warn("iptables resync failed: {}; trying again in {} s", e.what(),
                       opts.iptables_resync_s);
        }
        iptables_rebuilds.store(iptables->rebuilds(), std::memory_order_relaxed);
      }
      fallbacks.check(stats);
      table->reclaim();
    }
  } catch (const std::exception& e) {
    spdlog::critical("control thread: {}; stopping", e.what());
    exit_code = 1;
  }
  stop_workers();
  fallbacks.check(stats);
  log_stats(stats, "exit");
  return exit_code;
}

}  // namespace udpring::io
