#include "io/daemon/daemon.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "core/input_errors.h"
#include "core/lease.h"
#include "core/lease_policy.h"
#include "core/net_config.h"
#include "core/peer_routes.h"
#include "core/qsbr.h"
#include "core/route_table.h"
#include "core/subnet_env.h"
#include "core/worker_stats.h"
#include "encap/udp_encap.h"
#include "io/control/fast_paths.h"
#include "io/control/file_util.h"
#include "io/control/http_server.h"
#include "io/control/iptables_rules.h"
#include "io/control/leases/etcd_lease_store.h"
#include "io/control/leases/file_lease_store.h"
#include "io/control/leases/kube_lease_store.h"
#include "io/control/leases/small_file.h"
#include "io/control/metrics.h"
#include "io/control/peer_icmp_watch.h"
#include "io/control/systemd_notify.h"
#include "io/daemon/control_loop.h"
#include "io/daemon/fd_store.h"
#include "io/daemon/daemon_status.h"
#include "io/daemon/handover.h"
#include "io/daemon/memory_plan.h"
#include "io/daemon/retry.h"
#include "io/daemon/tun_setup.h"
#include "io/daemon/worker_sockets.h"
#include "io/dataplane/worker.h"
#include "io/kernel/nic_features.h"
#include "io/kernel/self_test.h"
#include "io/netlink/netlink.h"
#include "io/netlink/tun_link.h"

namespace udpring::io {
namespace {

using encap::kEncapOverhead;
constexpr uint32_t kMinTunMtu = 576;

// A FIFO, a device or a huge file given as --net-config-path is refused,
// never read: a read could block start-up or fill memory.
core::NetConfig load_net_config(const std::string& path) {
  std::optional<SmallFile> f;
  try {
    f = read_small_file(path, core::kNetConfigLimits.max_bytes, Symlinks::kFollow);
  } catch (const FileInputError& e) {
    throw std::runtime_error(std::string("net-conf: ") + e.what());
  }
  if (!f) throw std::runtime_error("cannot read net-conf " + path + ": it does not exist");
  try {
    return core::parse_net_config(f->text);
  } catch (const core::ConfigError& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

std::unique_ptr<LeaseStore> make_lease_store(const Options& opts, StoreContext ctx) {
  const int64_t margin_s = int64_t{opts.renew_margin_min} * 60;
  if (opts.subnet_mgr == "file") {
    return std::make_unique<FileLeaseStore>(opts.lease_dir, opts.net_config_path, opts.lease_ttl_s,
                                            margin_s, ctx);
  }
  if (opts.subnet_mgr == "etcd") {
    EtcdConfig cfg{opts.etcd_endpoints, opts.etcd_cafile,   opts.etcd_certfile,
                   opts.etcd_keyfile,   opts.etcd_username, opts.etcd_password};
    return std::make_unique<EtcdLeaseStore>(std::move(cfg), opts.etcd_prefix, opts.lease_ttl_s,
                                            margin_s, ctx);
  }
  if (opts.subnet_mgr == "kube") {
    KubeStoreOptions k;
    k.access = resolve_kube_access(opts.kube_api_url, opts.kubeconfig_file,
                                   [](const char* name) { return std::getenv(name); });
    k.net_config_path = opts.net_config_path;
    k.annotation_prefix = opts.kube_annotation_prefix;
    k.set_network_unavailable = opts.set_node_network_unavailable;
    return std::make_unique<KubeLeaseStore>(std::move(k), ctx);
  }
  throw std::runtime_error("--subnet-mgr=" + opts.subnet_mgr + " is not available");
}

// flanneld's subnet.env is under 200 bytes.
constexpr size_t kMaxSubnetEnvBytes = 64 * 1024;

std::optional<core::Ipv4Prefix> previous_subnet(const std::string& subnet_file,
                                                core::InputErrors& errors) {
  if (subnet_file.empty()) return std::nullopt;
  try {
    const auto f = read_small_file(subnet_file, kMaxSubnetEnvBytes, Symlinks::kFollow);
    return f ? core::parse_subnet_env(f->text).subnet : std::nullopt;
  } catch (const FileInputError& e) {
    errors.count(core::InputSource::kConfig);
    spdlog::warn("ignoring the previous subnet.env: {}", e.what());
    return std::nullopt;
  }
}

// The static leases as a store would list them: ours first, then each
// --static-peer in command-line order (which is their creation order: of
// two that overlap, the first given wins).
std::vector<core::Lease> static_leases(const Options& opts, const core::Ipv4Prefix& own,
                                       core::Be32 own_ip) {
  std::vector<core::Lease> leases;
  core::Lease mine;
  mine.subnet = own;
  mine.public_ip = own_ip;
  mine.key = "--static-subnet";
  leases.push_back(mine);
  for (const StaticPeer& p : opts.static_peers) {
    const std::string name = core::format_prefix(p.subnet);
    if (p.subnet == own) {
      spdlog::warn("--static-peer {} is this node's own lease; ignored (flannel skips its own lease)",
                   name);
      continue;
    }
    core::Lease l;
    l.subnet = p.subnet;
    l.public_ip = p.public_ip;
    l.key = "--static-peer " + name + "=" + core::format_ipv4(p.public_ip);
    l.created = static_cast<int64_t>(leases.size());
    leases.push_back(l);
  }
  return leases;
}

// The daemon from flags to forwarding. run() is the setup steps in order,
// each one doing one thing; what a step builds lives in a member whose
// destructor undoes it, so a failure at any step leaves nothing half made:
// the workers are stopped and joined, and the TUN queues closed, which
// removes the (non-persistent) device with its address and route. Two
// things stay on purpose, as with flanneld (three with --keep-tun, whose
// device is made persistent only once the node is ready): the lease (its TTL keeps it
// for the next start) and iptables rules (idempotent; a restart re-checks
// them). subnet.env is written last, so it never names a half-set-up node.
class Daemon {
 public:
  Daemon(const Options& opts, const sigset_t& sigs) : opts_(opts), sigs_(sigs) {
    sigemptyset(&stop_sigs_);
    sigaddset(&stop_sigs_, SIGINT);
    sigaddset(&stop_sigs_, SIGTERM);
  }
  ~Daemon() { stop_workers(); }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  int run() {
    try {
      check_flags();
      start_health_server();
      if (!load_network_config()) return 0;  // stopped while waiting
      find_interface();
      if (!take_lease()) return 0;
      set_up_tun_device();
      open_sockets();
      if (!route_peers()) return 0;
      test_udp_gso();
      take_over_data_path();
      watch_peer_icmp();
      start_workers();
      report_fast_paths();
      if (!install_iptables_rules()) return 0;
      write_subnet_env();
      announce_ready();
    } catch (const std::exception& e) {
      spdlog::critical("{}", e.what());
      return 1;
    }
    std::function<void()> not_ready, ready_again;
    if (http_) {
      not_ready = [this] { http_->set_not_ready(); };
      ready_again = [this] { http_->set_ready(); };
    }
    const int code = run_control_loop({opts_, sigs_, store_.get(), *peer_routes_, *table_, workers_,
                                       stats_, iptables_.get(), status_, *fallbacks_, not_ready,
                                       ready_again, icmp_watch_.get(), handover_.get(),
                                       successor_});
    const auto stopping = std::chrono::steady_clock::now();
    stop_workers();
    fallbacks_->check(stats_);
    log_stats(stats_, "exit");
    if (successor_) return hand_over(stopping);
    if (opts_.keep_tun && code == 0 && !store_in_systemd(stopping)) {
      spdlog::info("leaving TUN {} in place (--keep-tun): what is routed into it is dropped "
                   "until the next udpringd attaches",
                   opts_.tun_name);
    }
    return code;
  }

 private:
  bool static_mode() const { return opts_.subnet_mgr == "static"; }

  void check_flags() {
    for (const std::string& flag : opts_.unimplemented) {
      spdlog::warn("{}: a flanneld flag udpringd does not implement yet; ignored", flag);
    }
    if (!static_mode() && (opts_.static_subnet || !opts_.static_peers.empty())) {
      throw std::runtime_error("--static-subnet and --static-peer need --subnet-mgr=static");
    }
  }

  // First, so that probes see the daemon alive (503 on /readyz) while it
  // waits for etcd.
  void start_health_server() {
    if (!opts_.healthz_port) return;
    try {
      make_health_server();
    } catch (const std::system_error& e) {
      const std::optional<LinkState> s = read_link_state(opts_.tun_name);
      if (e.code().value() != EADDRINUSE || !s || s->queues == 0) throw;
      // Most likely the udpringd this one is about to replace.
      health_deferred_ = true;
      spdlog::info("{}: the port is taken while TUN {} is served by another process; serving "
                   "it once that one hands over",
                   e.what(), opts_.tun_name);
    }
  }

  // After a handover: the predecessor closes its server once it has given
  // the data path away.
  void start_deferred_health_server() {
    if (!health_deferred_) return;
    for (int attempt = 1;; ++attempt) {
      try {
        make_health_server();
        health_deferred_ = false;
        return;
      } catch (const std::system_error& e) {
        if (e.code().value() != EADDRINUSE || attempt == 40) throw;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  void make_health_server() {
    http_ = std::make_unique<HttpServer>(opts_.healthz_ip, opts_.healthz_port, [this] {
      // Before ready, the one family that may say why it is not.
      if (!running_.load(std::memory_order_acquire)) {
        return "# udpringd is starting\n" + render_input_errors(input_errors_.values());
      }
      MetricsInput in = status_.snapshot();
      in.input_errors = input_errors_.values();
      if (tun_.steering) in.tun_flows_placed = tun_.steering->flows_placed();
      return render_metrics(stats_, in, fast_paths_, UDPRING_VERSION);
    });
    spdlog::info("health and metrics on {}:{} (/healthz, /readyz, /metrics)",
                 core::format_ipv4(opts_.healthz_ip), http_->port());
  }

  bool load_network_config() {
    if (static_mode()) {
      net_ = load_net_config(opts_.net_config_path);
    } else {
      store_ = make_lease_store(opts_, {&input_errors_, &stop_sigs_});
      spdlog::info("lease store: {}", store_->describe());
      // A config that cannot be used, because of its text or of what holds
      // it (a FIFO, a malformed etcd answer), is counted and read again.
      const bool got = retry_every_second<std::exception>(sigs_, "network config", [&] {
        try {
          net_ = core::parse_net_config(store_->read_config());
        } catch (const core::ConfigError& e) {
          input_errors_.count(core::InputSource::kConfig);
          throw core::ConfigError("from " + store_->describe() + ": " + e.what());
        } catch (const StoreInputError&) {
          input_errors_.count(core::InputSource::kConfig);
          throw;
        }
      });
      if (!got) return false;
    }
    spdlog::info("network {}, /{} leases from {} to {}, UDP port {}",
                 core::format_prefix(net_.network), net_.subnet_len,
                 core::format_ipv4(net_.subnet_min), core::format_ipv4(net_.subnet_max), net_.port);
    return true;
  }

  void find_interface() {
    ext_ = find_external_interface(
        IfaceSelection{opts_.ifaces, opts_.iface_regex, opts_.iface_can_reach, opts_.public_ip});
    if (ext_.mtu < kMinTunMtu + kEncapOverhead) {
      throw std::runtime_error("interface " + ext_.name + " MTU " + std::to_string(ext_.mtu) +
                               " is too small for a " + std::to_string(kMinTunMtu) + "-byte TUN MTU");
    }
    spdlog::info("external interface {} (index {}), address {}, MTU {}, public IP {}", ext_.name,
                 ext_.ifindex, core::format_ipv4(ext_.addr), ext_.mtu,
                 core::format_ipv4(ext_.public_ip));
    if (opts_.gso && nic_feature_active(ext_.name, "tx-udp-segmentation") == false) {
      // Still correct, only dearer: the kernel cuts each GSO send into
      // datagrams in software before the device (bench: ~20 % more CPU per GB).
      spdlog::info("{} has no UDP segmentation offload (tx-udp-segmentation off): the kernel "
                   "segments UDP GSO sends in software; if the device supports it, "
                   "`ethtool -K {} tx-udp-segmentation on` saves that CPU",
                   ext_.name, ext_.name);
    }
    tun_mtu_ = ext_.mtu - kEncapOverhead;
  }

  bool take_lease() {
    if (static_mode()) {
      if (!opts_.static_subnet) {
        throw std::runtime_error("--subnet-mgr=static needs --static-subnet (this node's lease)");
      }
      own_ = *opts_.static_subnet;
      own_ip_ = ext_.public_ip;
      if (!net_.network.contains(own_)) {
        throw std::runtime_error("--static-subnet " + core::format_prefix(own_) +
                                 " is outside Network " + core::format_prefix(net_.network));
      }
      if (own_.length != net_.subnet_len) {
        throw std::runtime_error("--static-subnet " + core::format_prefix(own_) + " is not a /" +
                                 std::to_string(net_.subnet_len) +
                                 " (the network's SubnetLen, which every lease must have): fix "
                                 "the flag or set SubnetLen in " + opts_.net_config_path);
      }
      return true;
    }
    const auto previous = previous_subnet(opts_.subnet_file, input_errors_);
    if (previous) {
      spdlog::info("{} names a previous lease {}", opts_.subnet_file, core::format_prefix(*previous));
    }
    // etcd may be down for a moment (a restart, a leader election): keep
    // trying, as for the config, until it answers or we are told to stop.
    return retry_every_second<StoreUnavailable>(sigs_, "acquiring a lease", [&] {
      const core::Lease lease = store_->acquire(net_, ext_.public_ip, previous);
      own_ = lease.subnet;
      own_ip_ = lease.public_ip;
    });
  }

  void set_up_tun_device() {
    n_workers_ = resolved_workers(opts_, std::thread::hardware_concurrency());
    // A restart under systemd may have kept the last run's queues and
    // sockets in its fd store (io/daemon/fd_store.h): taken, like a
    // predecessor's, once the routes are in place.
    try {
      stored_ = take_stored_data_path();
    } catch (const std::exception& e) {
      spdlog::warn("{}: setting up TUN {} and the sockets anew", e.what(), opts_.tun_name);
    }
    if (stored_) {
      spdlog::info("systemd kept TUN {}'s queues and the UDP sockets of the last run in its fd "
                   "store: taking them once the routes are in place",
                   opts_.tun_name);
      return;
    }
    // The udpringd serving the node now may offer its queues and sockets
    // (io/daemon/handover.h): they are taken last, when this one is ready
    // to forward, so that the kernel queues packets for the shortest time.
    predecessor_ = Predecessor::find(opts_.tun_name);
    if (predecessor_) {
      spdlog::info("TUN {} is served by udpringd pid {}, which offers a handover: taking its "
                   "queues and sockets once the routes are in place",
                   opts_.tun_name, predecessor_->pid());
      return;
    }
    tun_ = set_up_tun(opts_, n_workers_, own_.network, tun_mtu_, net_.network);
  }

  void open_sockets() {
    if (predecessor_ || stored_) return;
    socks_ = open_worker_sockets(opts_, ext_.addr, net_.port, n_workers_);
  }

  // What a successor must match to take this daemon's queues and sockets.
  HandoverTerms handover_terms() const {
    HandoverTerms t;
    t.tun_name = opts_.tun_name;
    t.address = core::format_ipv4(own_.network);
    t.mtu = tun_mtu_;
    t.network = core::format_prefix(net_.network);
    t.bind = core::format_ipv4(ext_.addr) + ":" + std::to_string(net_.port);
    t.workers = n_workers_;
    t.tun_offload = opts_.tun_offload;
    t.uso = opts_.uso;
    t.send_sockets = opts_.source_port_spread && opts_.port_steering && n_workers_ > 1;
    return t;
  }

  // Takes the predecessor's data path, or builds one when it closed its own
  // instead (terms that differ) or the handover broke off.
  void take_over_data_path() {
    if (stored_) return take_stored();
    if (!predecessor_) return;
    const pid_t pid = predecessor_->pid();
    Predecessor::Answer a;
    try {
      a = predecessor_->take(handover_terms());
    } catch (const std::exception& e) {  // also a number out of range in its answer
      a.released = e.what();
    }
    predecessor_.reset();
    if (a.path) {
      predecessor_stopped_ = std::chrono::steady_clock::time_point(
          std::chrono::nanoseconds(a.path->stopped_ns));
      adopt(std::move(*a.path));
      spdlog::info("took over TUN {}'s {} queue(s) and the UDP sockets from udpringd pid {}: "
                   "what the kernel queued meanwhile is forwarded now",
                   opts_.tun_name, tun_.queues.size(), pid);
    } else {
      spdlog::info("udpringd pid {} handed nothing over ({}): setting up TUN {} and the sockets "
                   "anew",
                   pid, a.released, opts_.tun_name);
      tun_ = set_up_tun(opts_, n_workers_, own_.network, tun_mtu_, net_.network);
      socks_ = open_worker_sockets(opts_, ext_.addr, net_.port, n_workers_);
    }
    start_deferred_health_server();
  }

  void adopt(DataPath p) {
    tun_ = adopt_tun(opts_, std::move(p.tun), p.vnet, p.uso, own_.network, tun_mtu_,
                     net_.network);
    socks_.udp = std::move(p.udp);
    socks_.send = std::move(p.send);
    socks_.steered = p.steered;
  }

  // What systemd kept: taken when it was built as this daemon would build
  // it, else closed and built anew.
  void take_stored() {
    StoredDataPath s = std::move(*stored_);
    stored_.reset();
    const std::string diff = terms_difference(s.terms, handover_terms().text());
    if (diff.empty()) {
      try {
        predecessor_stopped_ = std::chrono::steady_clock::time_point(
            std::chrono::nanoseconds(s.path.stopped_ns));
        adopt(std::move(s.path));
        spdlog::info("took TUN {}'s {} queue(s) and the UDP sockets from systemd's fd store: "
                     "what the kernel queued meanwhile is forwarded now",
                     opts_.tun_name, tun_.queues.size());
        return;
      } catch (const std::exception& e) {
        predecessor_stopped_ = {};
        spdlog::warn("taking the queues systemd kept: {}; setting up TUN {} and the sockets anew",
                     e.what(), opts_.tun_name);
      }
    } else {
      spdlog::info("the queues and sockets systemd kept were built for {}: closed, setting up "
                   "TUN {} and the sockets anew",
                   diff, opts_.tun_name);
    }
    s.path = {};  // closes what is left of them before the device is rebuilt
    tun_ = set_up_tun(opts_, n_workers_, own_.network, tun_mtu_, net_.network);
    socks_ = open_worker_sockets(opts_, ext_.addr, net_.port, n_workers_);
  }

  // --keep-tun under systemd: the queues and sockets go to its fd store, so
  // that the kernel keeps queueing until the next udpringd takes them.
  // False when there is no service manager or it could not take them.
  bool store_in_systemd(std::chrono::steady_clock::time_point stopping) {
    if (!systemd_notify_socket_set() || workers_.empty()) return false;
    tun_.control.reset();  // a dup of queue 0: stored or not, the workers' copies decide
    std::string why;
    if (!store_data_path(release_data_path(stopping), handover_terms().text(), why)) {
      spdlog::warn("{}: TUN {}'s queues are closed, and what is routed into it is dropped until "
                   "the next udpringd attaches",
                   why, opts_.tun_name);
      return false;
    }
    spdlog::info("gave TUN {}'s {} queue(s) and the UDP sockets to systemd's fd store "
                 "(FileDescriptorStoreMax= in the unit; without it systemd closes them): the "
                 "kernel queues what arrives until the next udpringd takes them",
                 opts_.tun_name, workers_.size());
    return true;
  }

  // Before the workers take the sockets: the ports our datagrams leave from.
  void watch_peer_icmp() {
    std::vector<uint16_t> ports = {net_.port};
    for (const core::UniqueFd& fd : socks_.send) {
      sockaddr_in sa{};
      socklen_t len = sizeof sa;
      if (fd && getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0) {
        ports.push_back(ntohs(sa.sin_port));
      }
    }
    try {
      icmp_watch_ = std::make_unique<PeerIcmpWatch>(ext_.addr, std::move(ports), tun_mtu_);
      status_.set_peer_unreachable(icmp_watch_->counts());
    } catch (const std::system_error& e) {
      spdlog::warn("{}: ICMP errors about our datagrams are not read, so a dead peer's port "
                   "unreachable is not counted and a router's fragmentation needed is not passed "
                   "on to the pods; give udpringd CAP_NET_RAW for both",
                   e.what());
    }
  }

  // Every peer is routed before the first packet is forwarded: in static
  // mode from the flags, otherwise from the store's first batch, the
  // complete lease set.
  bool route_peers() {
    qsbr_ = std::make_unique<core::Qsbr>(n_workers_);
    table_ = std::make_unique<core::RouteTable>(*qsbr_);
    peer_routes_ = std::make_unique<core::PeerRoutes>(*table_, lease_policy(), own_, own_ip_,
                                                      net_.port);
    core::LeaseUpdate update;
    if (static_mode()) {
      update.reset = true;
      update.leases = static_leases(opts_, own_, own_ip_);
      peer_routes_->apply(update);
      // Flags cannot change while we run: a refused one is a mistake to
      // fix now, not a lease to wait for.
      if (!peer_routes_->refused().empty()) {
        const auto& [key, refusal] = *peer_routes_->refused().begin();
        throw std::runtime_error(key + " is refused: " +
                                 core::refusal_text(refusal.reason, peer_routes_->policy()) +
                                 (refusal.winner.empty() ? "" : " (" + refusal.winner + ")") +
                                 "; fix or remove the flag");
      }
      status_.set_lease_refusals(peer_routes_->refused_total(), peer_routes_->refused_now());
      return true;
    }
    if (!retry_every_second<StoreUnavailable>(sigs_, "listing leases", [&] {
          store_->wait_update(std::chrono::milliseconds(0), update);
        })) {
      return false;
    }
    const core::PeerRoutes::Result r = peer_routes_->apply(update);
    if (!r.own_lost.empty()) throw std::runtime_error(r.own_lost + " right after acquiring it");
    status_.set_lease_refusals(peer_routes_->refused_total(), peer_routes_->refused_now());
    return true;
  }

  // What a peer's lease must satisfy to be routed (core/lease_policy.h).
  core::LeasePolicy lease_policy() const {
    core::LeasePolicy p;
    p.network = net_.network;
    // flanneld in kube mode ignores SubnetLen (the controller-manager's
    // --node-cidr-mask-size decides, one size for every node): our own
    // podCIDR is the length every peer's has.
    p.subnet_len = opts_.subnet_mgr == "kube" ? own_.length : net_.subnet_len;
    p.own_addresses = {ext_.addr, ext_.public_ip, own_ip_};
    try {
      for (const core::Be32 a : local_ipv4_addresses()) p.own_addresses.push_back(a);
    } catch (const std::exception& e) {
      spdlog::warn("{}; a lease naming one of this node's other addresses is not recognised as "
                   "ours", e.what());
    }
    return p;
  }

  void test_udp_gso() {
    gso_ = opts_.gso;
    if (!gso_) return;
    const SelfTest t = self_test_udp_gso();
    if (t.result == SelfTestResult::kFailed) {
      spdlog::warn("UDP GSO self-test failed ({}); sending one datagram per sendmsg", t.detail);
      gso_ = false;
    } else {
      spdlog::info("UDP GSO self-test {}: {}",
                   t.result == SelfTestResult::kPassed ? "passed" : "skipped", t.detail);
    }
  }

  void report_memory_plan(const WorkerOptions& w) const {
    const MemoryPlan plan = plan_memory(w, n_workers_);
    std::string self;
    if (std::ifstream in("/proc/self/cgroup"); in) self.assign(std::istreambuf_iterator<char>(in), {});
    const std::optional<uint64_t> limit = cgroup_memory_limit(self);
    spdlog::info("memory: up to {} under load ({} worker(s) x {}, plus about {}){}",
                 format_mib(plan.total), plan.workers, format_mib(plan.per_worker),
                 format_mib(kBaseBytes), limit ? "; cgroup memory.max " + format_mib(*limit) : "");
    if (const std::string warn = memory_warning(plan, w, limit); !warn.empty()) spdlog::warn("{}", warn);
  }

  WorkerOptions worker_options() const {
    const bool vnet = tun_.vnet;
    const BufferPlan bufs = plan_buffers(opts_, vnet, opts_.gro, tun_mtu_);
    if (opts_.buffer_size && opts_.buffer_size < std::max(bufs.tun_need, bufs.udp_need)) {
      throw std::runtime_error(
          "--buffer-size " + std::to_string(opts_.buffer_size) + " is too small: " +
          std::to_string(std::max(bufs.tun_need, bufs.udp_need)) + " bytes are needed for " +
          (vnet || opts_.gro ? "64 KiB TUN offload / UDP GRO packets (or pass --no-tun-offload --no-gro)"
                             : "the TUN MTU plus the receive header"));
    }
    // 64 KiB buffers (plus 16 KiB of split headers per TUN buffer with
    // offload): cap the count so a typo cannot ask for gigabytes.
    if (opts_.buffers > 4096 && (vnet || opts_.gro)) {
      throw std::runtime_error("--buffers " + std::to_string(opts_.buffers) +
                               " is too many 64 KiB buffers (at most 4096 per ring with TUN "
                               "offload or UDP GRO; each ring would take " +
                               std::to_string(uint64_t{opts_.buffers} * 80 / 1024) + " MiB)");
    }
    WorkerOptions w = sized_worker_options(opts_, bufs, vnet);
    w.batch = opts_.batch;
    w.coalesce = tun_.coalesce;
    w.uso = tun_.uso;
    w.coalesce_udp = tun_.coalesce_udp;
    w.gso = gso_;
    w.gro = opts_.gro;
    w.multishot = opts_.multishot;
    w.peer_policy = {opts_.peer_check, own_};
    w.trust_outer_checksum = opts_.trust_outer_checksum;
    w.tun_addr = own_.network;
    w.tun_name = opts_.tun_name;
    w.icmp_time_exceeded = opts_.icmp_time_exceeded;
    w.icmp_rate = opts_.icmp_rate;
    w.icmp_burst = opts_.icmp_burst;
    w.sqpoll = opts_.sqpoll;
    w.busy_poll_us = opts_.busy_poll_us;
    w.busy_poll_mode = opts_.busy_poll_mode;
    w.send_zc = opts_.send_zc;
    return w;
  }

  void start_workers() {
    const WorkerOptions base = worker_options();
    report_memory_plan(base);
    for (unsigned i = 0; i < n_workers_; ++i) {
      WorkerOptions w = base;
      if (!opts_.cpu_affinity.empty()) w.cpu = opts_.cpu_affinity[i % opts_.cpu_affinity.size()];
      stats_.push_back(std::make_unique<core::WorkerStats>());
      workers_.push_back(std::make_unique<Worker>(i, std::move(tun_.queues[i]),
                                                  std::move(socks_.udp[i]), std::move(socks_.send[i]),
                                                  *table_, *qsbr_, *stats_.back(), stop_, w));
    }
    for (auto& w : workers_) threads_.emplace_back([&w] { w->run(); });
    fallbacks_ = std::make_unique<RuntimeFallbackLog>(workers_.size());
    // Setup inside the workers (rings, buffer registration) can still fail.
    for (auto& w : workers_) {
      while (w->state() == WorkerState::kStarting) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (w->state() == WorkerState::kFailed) {
        throw std::runtime_error("worker setup failed: " + w->error());
      }
    }
    spdlog::info("{} worker(s) forwarding: {}", n_workers_, workers_.front()->fast_paths_text());
    if (predecessor_stopped_ != std::chrono::steady_clock::time_point{}) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - predecessor_stopped_);
      spdlog::info("forwarding {} ms after the predecessor's workers stopped: what arrived "
                   "meanwhile waited in the kernel's queues",
                   ms.count());
    }
  }

  // Every worker asks its kernel the same; the first speaks for all.
  void report_fast_paths() {
    const FastPaths& got = workers_.front()->fast_paths();
    struct Refusal {
      bool asked, granted;
      const char* what;
    };
    for (const Refusal& r : {
             Refusal{opts_.sqpoll, got.sqpoll,
                     "--sqpoll: the kernel refused IORING_SETUP_SQPOLL; workers submit their own "
                     "requests"},
             Refusal{opts_.multishot, got.multishot,
                     "this kernel has no IORING_OP_READ_MULTISHOT (Linux 6.7+); the TUN is read "
                     "with plain reads"},
             Refusal{opts_.gro, got.gro,
                     "the kernel refused UDP_GRO (Linux 5.0+); one datagram per receive"},
             Refusal{opts_.send_zc, got.send_zc,
                     "--send-zc: this kernel has no IORING_OP_SENDMSG_ZC (Linux 6.1+); sends are "
                     "copied"},
         }) {
      if (r.asked && !r.granted) spdlog::warn("{}", r.what);
    }
    const bool many = n_workers_ > 1;
    const bool offload = opts_.tun_offload;
    const bool vnet = tun_.vnet;
    fast_paths_ = {
        {"tun_offload", offload, vnet},
        {"uso", offload && opts_.uso, vnet && tun_.uso},
        {"tcp_coalesce", offload && opts_.coalesce, vnet && tun_.coalesce},
        {"udp_coalesce", offload && opts_.uso && opts_.coalesce,
         vnet && tun_.coalesce && tun_.coalesce_udp},
        {"gso", opts_.gso, gso_},
        {"gro", opts_.gro, got.gro},
        {"multishot_read", opts_.multishot, got.multishot},
        {"send_zc", opts_.send_zc, got.send_zc},
        {"sqpoll", opts_.sqpoll, got.sqpoll},
        {"port_steering", opts_.port_steering && many, socks_.steered},
        {"tun_steering", opts_.tun_steering && many, tun_.steering != nullptr},
    };
  }

  // flannel's order: masquerade rules, then forward rules, then subnet.env.
  // iptables-restore may wait up to 10 s for the xtables lock: a SIGTERM
  // meanwhile kills it and stops here. False when stopped.
  bool install_iptables_rules() {
    std::vector<RuleSet> rule_sets;
    if (opts_.ip_masq) {
      const bool random_fully = !opts_.ip_masq_random_fully_disable && iptables_supports_random_fully();
      rule_sets.push_back(masq_rules(net_.network, own_, random_fully));
    }
    if (opts_.iptables_forward_rules) rule_sets.push_back(forward_rules(net_.network));
    if (rule_sets.empty()) return true;
    iptables_ = std::make_unique<IptablesManager>(std::move(rule_sets), &stop_sigs_);
    try {
      iptables_->apply();
    } catch (const IptablesStopped& e) {
      spdlog::info("stopped while installing iptables rules ({})", e.what());
      return false;
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string("installing iptables rules: ") + e.what() +
                               " (install iptables, or pass --iptables-forward-rules=false"
                               " and no --ip-masq)");
    }
    spdlog::info("iptables: {}{}, re-checked every {} s",
                 opts_.ip_masq ? "masquerade rules (FLANNEL-POSTRTG)" : "",
                 opts_.iptables_forward_rules
                     ? std::string(opts_.ip_masq ? " and " : "") + "forward rules (FLANNEL-FWD)"
                     : std::string(),
                 opts_.iptables_resync_s);
    return true;
  }

  // After setup, before "ready": the CNI plugin sizes the bridge from it.
  void write_subnet_env() {
    if (opts_.subnet_file.empty()) return;
    write_file_atomic(opts_.subnet_file,
                      core::format_subnet_env({net_.network, own_, tun_mtu_, opts_.ip_masq}), 0644);
    spdlog::info("wrote {}", opts_.subnet_file);
  }

  void announce_ready() {
    status_.set_routes(peer_routes_->route_count());
    if (store_) status_.set_lease(store_->status());
    running_.store(true, std::memory_order_release);
    if (opts_.keep_tun) {
      keep_tun_on_exit(tun_, opts_.tun_name);
      offer_handover();
    }
    if (http_) http_->set_ready();
    notify_systemd_ready();
    spdlog::info("udpringd ready: lease {}, {} peer route(s)", core::format_prefix(own_),
                 peer_routes_->route_count());
  }

  // --keep-tun: a successor started beside us may take the data path.
  void offer_handover() {
    try {
      handover_ = std::make_unique<HandoverListener>(opts_.tun_name);
      spdlog::info("a udpringd started beside this one for TUN {} takes its queues and sockets "
                   "without a gap",
                   opts_.tun_name);
    } catch (const std::system_error& e) {
      spdlog::warn("{}: a successor will have to wait for this udpringd to stop", e.what());
    }
  }

  // The stopped workers' queues and sockets, to hand on as they are.
  DataPath release_data_path(std::chrono::steady_clock::time_point stopping) {
    DataPath p;
    p.vnet = tun_.vnet;
    p.uso = tun_.uso;
    p.steered = socks_.steered;
    p.stopped_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       stopping.time_since_epoch()).count();
    for (auto& w : workers_) {
      Worker::Files f = w->release_files();
      p.tun.push_back(std::move(f.tun));
      p.udp.push_back(std::move(f.udp));
      p.send.push_back(std::move(f.send));
    }
    return p;
  }

  // The workers have stopped: give their queues and sockets to the
  // successor, or close them for it when it would build something else,
  // then serve nothing and wait to be stopped (a DaemonSet's old pod is
  // deleted once the new one is ready; exiting would get it restarted).
  int hand_over(std::chrono::steady_clock::time_point stopping) {
    Successor s = std::move(*successor_);
    successor_.reset();
    handover_.reset();  // the successor listens under the name next
    if (http_) http_->set_not_ready();
    tun_.control.reset();  // a dup of queue 0: it would keep the queue attached
    const std::string diff = terms_difference(s.terms(), handover_terms().text());
    if (diff.empty()) {
      if (s.give(release_data_path(stopping))) {
        spdlog::info("handed TUN {}'s queues and the UDP sockets to udpringd pid {}, which "
                     "forwards from now on",
                     opts_.tun_name, s.pid());
      }
    } else {
      workers_.clear();  // closes the queues and sockets
      s.release("it asks for " + diff);
      spdlog::info("udpringd pid {} asks for {}: closed TUN {}'s queues and the sockets so that "
                   "it builds its own",
                   s.pid(), diff, opts_.tun_name);
    }
    http_.reset();  // the port is the successor's
    store_.reset();  // no more renewals: the lease is the successor's (its TTL stays)
    spdlog::info("idle until stopped");
    int sig = 0;
    while (sig != SIGINT && sig != SIGTERM) {
      if (sigwait(&sigs_, &sig) != 0) break;
    }
    return 0;
  }

  void stop_workers() {
    stop_.store(true, std::memory_order_relaxed);
    for (auto& w : workers_) w->wake();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  const Options& opts_;
  const sigset_t& sigs_;
  sigset_t stop_sigs_;  // SIGINT and SIGTERM: they end the store's requests on this thread
  // Counted by the stores' threads until the store is gone: declared first.
  core::InputErrors input_errors_;
  // What the steps find and build, in the order they do. Destroyed in
  // reverse, after ~Daemon has stopped the workers.
  core::NetConfig net_;
  std::unique_ptr<LeaseStore> store_;
  ExternalInterface ext_;
  uint32_t tun_mtu_ = 0;
  core::Ipv4Prefix own_;
  core::Be32 own_ip_;  // what our lease advertises (kube: maybe an annotation's)
  unsigned n_workers_ = 0;
  TunSetup tun_;
  WorkerSockets socks_;
  std::unique_ptr<PeerIcmpWatch> icmp_watch_;  // null without CAP_NET_RAW
  std::unique_ptr<core::Qsbr> qsbr_;
  std::unique_ptr<core::RouteTable> table_;
  std::unique_ptr<core::PeerRoutes> peer_routes_;
  bool gso_ = false;  // UDP GSO asked for and its self-test did not fail
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<core::WorkerStats>> stats_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::unique_ptr<RuntimeFallbackLog> fallbacks_;
  std::vector<FastPath> fast_paths_;
  std::unique_ptr<IptablesManager> iptables_;
  std::optional<Predecessor> predecessor_;       // until take_over_data_path
  std::optional<StoredDataPath> stored_;         // the same, from systemd's fd store
  std::unique_ptr<HandoverListener> handover_;   // once ready, with --keep-tun
  std::optional<Successor> successor_;           // one asked: the control loop ended
  bool health_deferred_ = false;                 // the port was the predecessor's
  std::chrono::steady_clock::time_point predecessor_stopped_;  // when handed over: the gap's start
  // What the HTTP thread reads: stats_, tun_.steering and fast_paths_ once
  // running_ is set (release), status_ at any time.
  DaemonStatus status_;
  std::atomic<bool> running_{false};
  std::unique_ptr<HttpServer> http_;  // last: stopped first, before what it reads
};

}  // namespace

int run_daemon(const Options& opts) {
  // Block the signals we handle before any thread exists, so every thread
  // inherits the mask and only sigtimedwait ever sees them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  Daemon daemon(opts, sigs);
  return daemon.run();
}

}  // namespace udpring::io
