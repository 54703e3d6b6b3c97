#include "io/daemon/options.h"

#include <charconv>
#include <functional>
#include <cctype>
#include <map>
#include <set>
#include <string_view>

namespace udpring::io {
namespace {

unsigned parse_unsigned(const std::string& flag, const std::string& v, unsigned lo, unsigned hi) {
  unsigned n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n < lo || n > hi) {
    throw UsageError("--" + flag + " \"" + v + "\": expected a whole number from " +
                     std::to_string(lo) + " to " + std::to_string(hi));
  }
  return n;
}

bool parse_bool(const std::string& flag, const std::string& v) {
  if (v == "true" || v == "1" || v == "t" || v == "T" || v == "TRUE" || v == "True") return true;
  if (v == "false" || v == "0" || v == "f" || v == "F" || v == "FALSE" || v == "False") return false;
  throw UsageError("--" + flag + " \"" + v + "\": expected true or false");
}

core::Ipv4Prefix parse_cidr(const std::string& flag, const std::string& v) {
  auto p = core::parse_prefix(v);
  if (!p) throw UsageError("--" + flag + " \"" + v + "\": expected an IPv4 CIDR like 10.5.1.0/24");
  return *p;
}

struct FlagDef {
  bool is_bool;
  std::function<void(Options&, const std::string&, const std::string&)> apply;
};

const std::map<std::string, FlagDef, std::less<>>& flag_table() {
  static const std::map<std::string, FlagDef, std::less<>> table = {
      {"subnet-mgr", {false, [](Options& o, auto& f, auto& v) {
         if (v != "etcd" && v != "file" && v != "static" && v != "kube") {
           throw UsageError("--" + f + " \"" + v + "\": expected etcd, file, static or kube");
         }
         o.subnet_mgr = v;
       }}},
      {"kube-subnet-mgr", {true, [](Options& o, auto& f, auto& v) {
         if (parse_bool(f, v)) o.subnet_mgr = "kube";
       }}},
      {"lease-dir", {false, [](Options& o, auto& f, auto& v) {
         if (v.empty()) throw UsageError("--" + f + ": needs a directory");
         o.lease_dir = v;
       }}},
      {"subnet-lease-ttl", {false, [](Options& o, auto& f, auto& v) {
         o.lease_ttl_s = parse_unsigned(f, v, 2, 86400 * 365);
       }}},
      {"subnet-lease-renew-margin", {false, [](Options& o, auto& f, auto& v) {
         o.renew_margin_min = parse_unsigned(f, v, 1, 1439);  // flanneld exits outside this
       }}},
      {"etcd-endpoints", {false, [](Options& o, auto& f, auto& v) {
         o.etcd_endpoints.clear();
         size_t start = 0;
         while (start <= v.size()) {
           const size_t comma = std::min(v.find(',', start), v.size());
           std::string ep = v.substr(start, comma - start);
           if (ep.rfind("http://", 0) != 0 && ep.rfind("https://", 0) != 0) {
             throw UsageError("--" + f + " \"" + v + "\": \"" + ep +
                              "\" is not an http:// or https:// URL");
           }
           while (!ep.empty() && ep.back() == '/') ep.pop_back();
           o.etcd_endpoints.push_back(ep);
           start = comma + 1;
         }
       }}},
      {"etcd-prefix", {false, [](Options& o, auto& f, auto& v) {
         if (v.empty() || v[0] != '/') throw UsageError("--" + f + " \"" + v + "\": must start with /");
         o.etcd_prefix = v;
       }}},
      {"etcd-keyfile", {false, [](Options& o, auto&, auto& v) { o.etcd_keyfile = v; }}},
      {"etcd-certfile", {false, [](Options& o, auto&, auto& v) { o.etcd_certfile = v; }}},
      {"etcd-cafile", {false, [](Options& o, auto&, auto& v) { o.etcd_cafile = v; }}},
      {"etcd-username", {false, [](Options& o, auto&, auto& v) { o.etcd_username = v; }}},
      {"etcd-password", {false, [](Options& o, auto&, auto& v) { o.etcd_password = v; }}},
      {"iface-regex", {false, [](Options& o, auto&, auto& v) { o.iface_regex.push_back(v); }}},
      {"iface-can-reach", {false, [](Options& o, auto& f, auto& v) {
         auto ip = core::parse_ipv4(v);
         if (!ip) throw UsageError("--" + f + " \"" + v + "\": expected an IPv4 address");
         o.iface_can_reach = *ip;
       }}},
      {"public-ip", {false, [](Options& o, auto& f, auto& v) {
         auto ip = core::parse_ipv4(v);
         if (!ip) throw UsageError("--" + f + " \"" + v + "\": expected an IPv4 address");
         o.public_ip = *ip;
       }}},
      {"ip-masq", {true, [](Options& o, auto& f, auto& v) { o.ip_masq = parse_bool(f, v); }}},
      {"ip-masq-fully-random-disable", {true, [](Options& o, auto& f, auto& v) {
         o.ip_masq_random_fully_disable = parse_bool(f, v);
       }}},
      {"iptables-resync", {false, [](Options& o, auto& f, auto& v) {
         o.iptables_resync_s = parse_unsigned(f, v, 1, 86400);
       }}},
      {"iptables-forward-rules", {true, [](Options& o, auto& f, auto& v) {
         o.iptables_forward_rules = parse_bool(f, v);
       }}},
      {"net-config-path", {false, [](Options& o, auto&, auto& v) { o.net_config_path = v; }}},
      {"static-subnet", {false, [](Options& o, auto& f, auto& v) { o.static_subnet = parse_cidr(f, v); }}},
      {"static-peer", {false, [](Options& o, auto& f, auto& v) {
         const auto eq = v.find('=');
         if (eq == std::string::npos) {
           throw UsageError("--" + f + " \"" + v + "\": expected SUBNET=IP, e.g. 10.5.2.0/24=192.168.1.20");
         }
         auto ip = core::parse_ipv4(std::string_view(v).substr(eq + 1));
         if (!ip) throw UsageError("--" + f + " \"" + v + "\": \"" + v.substr(eq + 1) + "\" is not an IPv4 address");
         o.static_peers.push_back({parse_cidr(f, v.substr(0, eq)), *ip});
       }}},
      {"subnet-file", {false, [](Options& o, auto&, auto& v) { o.subnet_file = v; }}},
      {"healthz-ip", {false, [](Options& o, auto& f, auto& v) {
         auto ip = core::parse_ipv4(v);
         if (!ip) throw UsageError("--" + f + " \"" + v + "\": expected an IPv4 address");
         o.healthz_ip = *ip;
       }}},
      {"healthz-port", {false, [](Options& o, auto& f, auto& v) {
         o.healthz_port = static_cast<uint16_t>(parse_unsigned(f, v, 0, 65535));
       }}},
      {"iface", {false, [](Options& o, auto&, auto& v) { o.ifaces.push_back(v); }}},
      {"tun-name", {false, [](Options& o, auto& f, auto& v) {
         if (v.empty() || v.size() > 15) throw UsageError("--" + f + " \"" + v + "\": must be 1-15 characters");
         o.tun_name = v;
       }}},
      {"workers", {false, [](Options& o, auto& f, auto& v) { o.workers = parse_unsigned(f, v, 0, 256); }}},
      {"tun-txqueuelen", {false, [](Options& o, auto& f, auto& v) {
         o.tun_txqueuelen = parse_unsigned(f, v, 0, 1000000);
       }}},
      {"no-multishot", {true, [](Options& o, auto& f, auto& v) { o.multishot = !parse_bool(f, v); }}},
      {"no-gso", {true, [](Options& o, auto& f, auto& v) { o.gso = !parse_bool(f, v); }}},
      {"no-tun-offload", {true, [](Options& o, auto& f, auto& v) { o.tun_offload = !parse_bool(f, v); }}},
      {"no-uso", {true, [](Options& o, auto& f, auto& v) { o.uso = !parse_bool(f, v); }}},
      {"no-coalesce", {true, [](Options& o, auto& f, auto& v) { o.coalesce = !parse_bool(f, v); }}},
      {"no-trust-outer-checksum", {true, [](Options& o, auto& f, auto& v) { o.trust_outer_checksum = !parse_bool(f, v); }}},
      {"no-source-port-spread", {true, [](Options& o, auto& f, auto& v) { o.source_port_spread = !parse_bool(f, v); }}},
      {"no-port-steering", {true, [](Options& o, auto& f, auto& v) { o.port_steering = !parse_bool(f, v); }}},
      {"no-tun-steering", {true, [](Options& o, auto& f, auto& v) { o.tun_steering = !parse_bool(f, v); }}},
      {"cpu-affinity", {false, [](Options& o, auto& f, auto& v) {
         o.cpu_affinity.clear();
         size_t start = 0;
         while (start <= v.size()) {
           const size_t comma = std::min(v.find(',', start), v.size());
           o.cpu_affinity.push_back(static_cast<int>(parse_unsigned(f, v.substr(start, comma - start), 0, 4095)));
           start = comma + 1;
         }
       }}},
      {"ring-entries", {false, [](Options& o, auto& f, auto& v) { o.ring_entries = parse_unsigned(f, v, 8, 32768); }}},
      {"batch", {false, [](Options& o, auto& f, auto& v) { o.batch = parse_unsigned(f, v, 1, 1024); }}},
      {"buffers", {false, [](Options& o, auto& f, auto& v) {
         o.buffers = parse_unsigned(f, v, 16, 32768);
         if (o.buffers & (o.buffers - 1)) throw UsageError("--" + f + " \"" + v + "\": must be a power of two");
       }}},
      {"buffer-size", {false, [](Options& o, auto& f, auto& v) { o.buffer_size = parse_unsigned(f, v, 1024, 1u << 20); }}},
      {"socket-rcvbuf", {false, [](Options& o, auto& f, auto& v) { o.socket_rcvbuf = parse_unsigned(f, v, 4096, 1u << 30); }}},
      {"socket-sndbuf", {false, [](Options& o, auto& f, auto& v) { o.socket_sndbuf = parse_unsigned(f, v, 4096, 1u << 30); }}},
      {"busy-poll", {false, [](Options& o, auto& f, auto& v) {
         if (v == "auto") {
           o.busy_poll_us = 100;
           o.busy_poll_auto = true;
           return;
         }
         o.busy_poll_us = parse_unsigned(f, v, 0, 1000000);
         o.busy_poll_auto = false;
       }}},
      {"sqpoll", {true, [](Options& o, auto& f, auto& v) { o.sqpoll = parse_bool(f, v); }}},
      {"send-zc", {true, [](Options& o, auto& f, auto& v) { o.send_zc = parse_bool(f, v); }}},
      {"no-send-zc", {true, [](Options& o, auto& f, auto& v) { o.send_zc = !parse_bool(f, v); }}},
      {"print-config", {true, [](Options& o, auto& f, auto& v) { o.print_config = parse_bool(f, v); }}},
      {"no-gro", {true, [](Options& o, auto& f, auto& v) { o.gro = !parse_bool(f, v); }}},
      {"no-peer-check", {true, [](Options& o, auto& f, auto& v) { o.peer_check = !parse_bool(f, v); }}},
      {"v", {false, [](Options& o, auto& f, auto& v) { o.verbosity = static_cast<int>(parse_unsigned(f, v, 0, 10)); }}},
      {"help", {true, [](Options& o, auto& f, auto& v) { o.help = parse_bool(f, v); }}},
      {"h", {true, [](Options& o, auto& f, auto& v) { o.help = parse_bool(f, v); }}},
      {"version", {true, [](Options& o, auto& f, auto& v) { o.version = parse_bool(f, v); }}},
  };
  return table;
}

}  // namespace

namespace {

// flanneld flags (its main.go) that udpringd accepts so that a flanneld
// command line or DaemonSet works unchanged, but does not implement yet.
// Each given one is logged as a warning; none is silently ignored.
struct CompatFlag {
  const char* name;
  bool is_bool;
};
constexpr CompatFlag kCompatFlags[] = {
    {"public-ipv6", false},     {"kube-api-url", false},       {"kubeconfig-file", false},
    {"kube-annotation-prefix", false},                         {"ip-blackhole-route", true},
    {"set-node-network-unavailable", true},                    {"vmodule", false},
    {"log_backtrace_at", false},
};

const CompatFlag* find_compat(std::string_view name) {
  for (const CompatFlag& f : kCompatFlags) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

std::string env_name(std::string_view flag) {
  std::string out = "FLANNELD_";
  for (char c : flag) {
    out += (c == '-' || c == '.') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

Options parse_options(int argc, const char* const* argv, const EnvLookup& env) {
  Options o;
  const auto& table = flag_table();
  std::set<std::string, std::less<>> given;
  auto apply = [&](const std::string& name, const std::string& value) {
    if (const auto it = table.find(name); it != table.end()) {
      it->second.apply(o, name, value);
      return;
    }
    if (const CompatFlag* f = find_compat(name); f && f->is_bool) {
      parse_bool(name, value);
    }
    o.unimplemented.push_back("--" + name + "=" + value);
  };
  auto is_bool = [&](const std::string& name) {
    if (const auto it = table.find(name); it != table.end()) return it->second.is_bool;
    const CompatFlag* f = find_compat(name);
    return f && f->is_bool;
  };
  auto known = [&](const std::string& name) {
    return table.count(name) || find_compat(name);
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') {
      throw UsageError("unexpected argument \"" + std::string(arg) + "\" (flags start with --)");
    }
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    std::string name(arg);
    std::optional<std::string> value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
    }
    if (!known(name)) throw UsageError("unknown flag --" + name + " (see --help)");
    if (!value) {
      if (is_bool(name)) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw UsageError("flag --" + name + " needs a value");
      }
    }
    given.insert(name);
    apply(name, *value);
  }
  // flanneld's rule: FLANNELD_* only for flags absent from the command line,
  // and only when non-empty.
  std::vector<std::string> names;
  for (const auto& [name, def] : table) names.push_back(name);
  for (const CompatFlag& f : kCompatFlags) names.emplace_back(f.name);
  for (const std::string& name : names) {
    if (given.count(name) || name == "help" || name == "h" || name == "version" ||
        name == "print-config") {
      continue;
    }
    const std::string var = env_name(name);
    const char* v = env(var.c_str());
    if (v == nullptr || *v == '\0') continue;
    try {
      apply(name, v);
    } catch (const UsageError& e) {
      throw UsageError(std::string("from $") + var + ": " + e.what());
    }
  }
  return o;
}

std::string usage_text() {
  return R"(udpringd: an io_uring drop-in for flannel's udp backend.

Usage: udpringd [flags]     (flags take one or two dashes; --name=value or --name value)

Leases (where this node's subnet and its peers' come from):
  --subnet-mgr=etcd|file|static|kube
                             etcd (default, as flanneld): flannel's keys in etcd v3, shared
                             with stock flanneld nodes. file: the embedded store, a directory
                             of lease files (--lease-dir) for nodes on one machine, e.g. in
                             network namespaces; no server needed. static: --static-subnet
                             and --static-peer. kube: not implemented yet.
  --kube-subnet-mgr          flanneld's spelling of --subnet-mgr=kube.
  --etcd-endpoints=URLS      Comma-separated etcd client URLs, tried in order.
                             Default http://127.0.0.1:4001,http://127.0.0.1:2379.
  --etcd-prefix=PATH         Key prefix: config at PATH/config, leases at
                             PATH/subnets/a.b.c.d-len. Default /coreos.com/network.
  --etcd-certfile=FILE, --etcd-keyfile=FILE
                             Client certificate and key; TLS (1.2+) is used when both are set.
  --etcd-cafile=FILE         CA bundle that signed etcd's server certificate.
  --etcd-username=NAME, --etcd-password=SECRET
                             etcd user (etcd's authentication; a token is fetched and renewed).
  --lease-dir=DIR            --subnet-mgr=file: the lease directory, with an optional
                             DIR/config (else --net-config-path is read) and one file per
                             lease in DIR/subnets. Default /var/lib/udpring/leases.
  --subnet-lease-renew-margin=MIN
                             Renew the lease MIN minutes before it expires (1-1439). Default 60.
  --subnet-lease-ttl=SEC     Lease lifetime. Default 86400 (flannel's); shorter values are for
                             tests. With a TTL at or below the margin, renewal is half-way.
  --net-config-path=PATH     flannel's net-conf.json (Network, SubnetLen, SubnetMin/Max,
                             Backend.Type "udp", Backend.Port) for the static mode, and for
                             the file mode when DIR/config is absent. etcd mode reads
                             <etcd-prefix>/config from etcd instead. Default /etc/kube-flannel/net-conf.json.
  --static-subnet=CIDR       static: this node's lease, e.g. 10.5.1.0/24, inside Network.
  --static-peer=CIDR=IP      static: a peer's lease and public IP, e.g. 10.5.2.0/24=192.168.1.20.
                             Repeatable. Traffic for CIDR goes to IP:Backend.Port.

External interface (its MTU sets flannel0's, MTU - 28; the UDP socket binds to its address):
  --iface=NAME|IP            Repeatable, first match wins. Default: the interface of the IPv4
                             default route.
  --iface-regex=REGEX        Repeatable, tried after --iface: matched against every IPv4
                             address first, then against interface names.
  --iface-can-reach=IP       The interface (and source address) the kernel would use to reach IP.
  --public-ip=IP             The address peers send to (the lease's PublicIP). Without
                             --iface*, the interface that owns IP is used; behind NAT give
                             --iface too.

Masquerade and forwarding (iptables, in this node's network namespace):
  --ip-masq                  Install flannel's NAT rules (chain FLANNEL-POSTRTG in nat,
                             jumped to from POSTROUTING): pod traffic leaving the overlay is
                             masqueraded. Default off.
  --ip-masq-fully-random-disable
                             Do not add --random-fully to the MASQUERADE rules.
  --iptables-forward-rules   Accept overlay traffic in FORWARD (chain FLANNEL-FWD). Default
                             true; --iptables-forward-rules=false to leave FORWARD alone.
  --iptables-resync=SEC      Check the rules every SEC seconds and rebuild them, in order,
                             when one is missing. Default 5.

  --subnet-file=PATH         Where to write flannel's subnet.env (FLANNEL_NETWORK,
                             FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ) for the CNI plugin,
                             atomically, mode 0644, after setup and before "ready".
                             Default /run/flannel/subnet.env; an empty value writes none.

Data plane:
  --tun-name=NAME            TUN device name. Default flannel0.
  --workers=N                Forwarding threads, each with its own io_uring, TUN queue and
                             UDP socket. Default 0 = one per online CPU.
  --tun-txqueuelen=N         TUN transmit queue length (packets queued for udpringd to read).
                             Default 4000; 0 keeps the kernel's 500, which drops under bursts.
  --no-multishot             Read the TUN with plain reads even where READ_MULTISHOT
                             (Linux 6.7+) is available. For A/B tests.
  --no-tun-offload           Open the TUN without IFF_VNET_HDR and offloads: one packet per
                             read and per write. By default the TUN hands over 64 KiB TCP
                             super-packets (TSO), which udpringd cuts into MTU-sized
                             datagrams without copying payload, and accepts merged TCP
                             segments on write. The wire format is the same either way.
  --no-uso                   With TUN offload on, leave UDP out of it: no UDP super-packets
                             from the TUN, no merged UDP writes. By default USO is used when
                             the kernel has it (Linux 6.2+).
  --no-coalesce              With TUN offload on, still write received TCP segments to the
                             TUN one by one instead of merging runs of one flow.
  --no-trust-outer-checksum  Sum every segment's TCP/UDP checksum before merging it. By
                             default segments that arrived in a UDP GRO receive are merged
                             unsummed: the kernel built that receive only from datagrams
                             whose non-zero UDP checksum, which covers the whole inner
                             packet, it validated (or from a GSO send on this host). Single
                             datagrams, which may carry checksum 0, are always summed.
  --no-gso                   Send one datagram per sendmsg. By default consecutive packets to
                             one peer leave as a single UDP GSO sendmsg (UDP_SEGMENT), cut
                             into ordinary datagrams by the kernel: the wire is unchanged.
                             Turned off by itself if the device rejects GSO (EIO).
  --no-gro                   Do not enable UDP_GRO on the socket. By default the kernel may
                             deliver back-to-back datagrams from one peer as one buffer,
                             which udpringd splits without copying.
  --no-source-port-spread    With 2+ workers each worker sends from its own UDP source port
                             (see --no-port-steering; the destination port stays
                             Backend.Port, and flanneld accepts any source port). This flag
                             sends everything from Backend.Port, so one of the peer's
                             workers receives all of it.
  --no-port-steering         With 2+ workers, worker w sends from port base+w (base a multiple
                             of 840, from 33600 up) and a BPF program on the receiving
                             sockets hands a datagram from port p to worker (p mod 840) mod N:
                             worker w talks to the peer's worker w, each flow keeps one
                             worker per node and the workers share the flows. This flag
                             sends from ports the kernel picks and leaves the receiving
                             worker to the kernel's hash, which often puts all of a peer's
                             traffic on one worker.
  --no-tun-steering          With 2+ workers, an eBPF program on the TUN (TUNSETSTEERINGEBPF)
                             sends each new TCP or UDP flow out of the next queue in turn,
                             so the workers share the flows evenly (fragments and other
                             protocols go by a hash of the addresses). This flag leaves the
                             choice to the TUN's flow hash, which puts 4 flows 2-2 on two
                             workers only 3 times in 8.
  --send-zc / --no-send-zc   Send GSO trains with IORING_OP_SENDMSG_ZC (zero copy). Default
                             off: a train has more iovecs than a zero-copy send may pin, so
                             the kernel refuses it (EMSGSIZE) and the worker goes back to
                             copying, resending that train (logged once, send_zc_fallback).

Tuning (defaults are the fastest safe settings; see docs/tuning.md for measured effects):
  --cpu-affinity=LIST        Pin worker i to CPU LIST[i mod n], e.g. 0,1. Default: no pinning.
  --ring-entries=N           Submission queue entries per worker ring (8-32768). Default 1024.
  --batch=N                  Packets classified per encapsulate/decapsulate call. Default 64.
  --buffers=N                Buffers per provided-buffer ring (power of two). Default 1024,
                             or 256 for the 64 KiB buffers of TUN offload and UDP GRO.
  --buffer-size=BYTES        Bytes per buffer. Default: enough for the enabled features
                             (MTU-sized without offloads, 64 KiB with them). A smaller value
                             is refused with the feature that needs more.
  --socket-rcvbuf=BYTES      UDP receive buffer (SO_RCVBUFFORCE, else SO_RCVBUF). Default 4 MiB.
  --socket-sndbuf=BYTES      UDP send buffer. Default 4 MiB.
  --busy-poll=auto|USEC      Spin for completions before sleeping, which saves the wake-up
                             (about 30 us of CPU and of latency per packet on a VM). auto
                             (default): spin up to 100 us, only right after traffic, not
                             within 1 ms of a bulk turn (16 KiB or more read at once), and
                             back off when spins find nothing, so an idle or slow link and
                             bulk transfers cost no spinning CPU, while request/response
                             traffic stays on a spinning core. USEC: always spin up to
                             USEC. 0: never spin.
  --sqpoll                   Let a kernel thread submit (IORING_SETUP_SQPOLL). Costs a core;
                             falls back to normal submission if refused. Default off.
  --print-config             Print the effective settings (auto values resolved) and the
                             kernel features detected, then exit. As root it also runs the
                             daemon's offload checks (TUN offload, USO, TUN GSO writes, UDP
                             GSO) in a network namespace of its own, which vanishes after.

  --no-peer-check            Accept datagrams from any source address. By default a datagram
                             whose source is not a known peer's public IP is dropped and
                             counted (drop_unknown_peer); stock flanneld accepts anything.

Other:
  --healthz-ip=IP            Address of the health and metrics endpoint. Default 0.0.0.0.
  --healthz-port=PORT        Serve GET /healthz (200 while running), /readyz (503 until the
                             TUN, sockets, workers and subnet.env are in place, then 200) and
                             /metrics (Prometheus text: packets and bytes each way, drops by
                             reason, offload counters, fast paths in use, routes). Default
                             0 = off, as flanneld.
  flanneld compatibility: the flanneld flags udpringd does not implement (--public-ipv6,
  --kube-api-url, --kubeconfig-file, --kube-annotation-prefix, --ip-blackhole-route,
  --set-node-network-unavailable, --vmodule, --log_backtrace_at) are accepted so a flanneld
  command line works unchanged, and each given one is logged as a warning naming it.
  Every flag can also come from FLANNELD_<NAME> (upper case, '-' as '_'), used only when
  the flag is not on the command line.
  -v=N                       Log verbosity: 0 info, 1 debug, 2 trace.
  --help, -h                 This text.
  --version                  Print the version and exit.

Signals: SIGTERM/SIGINT stop cleanly (the TUN and its route disappear, as with flanneld);
SIGUSR1 logs one "stats:" line with every counter summed over the workers.
)";
}

BufferPlan plan_buffers(const Options& o, bool vnet, bool gro, uint32_t tun_mtu) {
  // recvmsg multishot puts io_uring_recvmsg_out (16) and the source address
  // (16) in front of every datagram, then room for the UDP_GRO cmsg (24).
  constexpr uint32_t kRecvHeaderBytes = 32;
  constexpr uint32_t kGroCmsgBytes = 32;
  auto pow2 = [](uint32_t n) {
    uint32_t v = 2048;
    while (v < n) v <<= 1;
    return v;
  };
  BufferPlan p{};
  // A TSO read is up to 64 KiB plus the vnet header; a GRO receive up to
  // 64 KiB after the recvmsg header.
  p.tun_need = vnet ? 65536 + 64 : tun_mtu;
  p.udp_need = (gro ? 65536 : tun_mtu) + kRecvHeaderBytes + kGroCmsgBytes;
  p.tun_bytes = o.buffer_size ? o.buffer_size : (vnet ? p.tun_need : pow2(p.tun_need));
  p.udp_bytes = o.buffer_size ? o.buffer_size : (gro ? p.udp_need : pow2(p.udp_need));
  // 64 KiB buffers: 256 of them is 16 MiB per ring.
  p.tun_count = o.buffers ? o.buffers : (vnet ? 256 : 1024);
  p.udp_count = o.buffers ? o.buffers : (gro ? 256 : 1024);
  return p;
}

std::string describe_options(const Options& o, unsigned online_cpus) {
  auto b = [](bool v) { return v ? "on" : "off"; };
  std::string cpus;
  for (int c : o.cpu_affinity) {
    if (!cpus.empty()) cpus += ',';
    cpus += std::to_string(c);
  }
  std::string peers;
  for (const StaticPeer& p : o.static_peers) {
    if (!peers.empty()) peers += ' ';
    peers.append(core::format_prefix(p.subnet)).append("=").append(core::format_ipv4(p.public_ip));
  }
  std::string ifaces;
  for (const std::string& i : o.ifaces) {
    if (!ifaces.empty()) ifaces += ',';
    ifaces += i;
  }
  std::string out;
  auto line = [&](const char* k, const std::string& v) { out.append(k).append(": ").append(v).append("\n"); };
  line("subnet-mgr", o.subnet_mgr);
  if (o.subnet_mgr == "etcd") {
    std::string eps;
    for (const std::string& e : o.etcd_endpoints) eps += (eps.empty() ? "" : ",") + e;
    line("etcd-endpoints", eps);
    line("etcd-prefix", o.etcd_prefix);
    line("etcd-tls", !o.etcd_certfile.empty() && !o.etcd_keyfile.empty() ? "on" : "off");
    line("etcd-auth", o.etcd_username.empty() ? "off" : "user " + o.etcd_username);
  }
  if (o.subnet_mgr == "file") line("lease-dir", o.lease_dir);
  line("subnet-lease-ttl", std::to_string(o.lease_ttl_s) + " s");
  line("subnet-lease-renew-margin", std::to_string(o.renew_margin_min) + " min");
  std::string regexes;
  for (const std::string& r : o.iface_regex) regexes += (regexes.empty() ? "" : " ") + r;
  line("iface-regex", regexes.empty() ? "(none)" : regexes);
  line("iface-can-reach", o.iface_can_reach ? core::format_ipv4(*o.iface_can_reach) : "(none)");
  line("public-ip", o.public_ip ? core::format_ipv4(*o.public_ip) : "(interface address)");
  line("ip-masq", b(o.ip_masq));
  line("ip-masq-random-fully", b(o.ip_masq && !o.ip_masq_random_fully_disable));
  line("iptables-forward-rules", b(o.iptables_forward_rules));
  line("iptables-resync", std::to_string(o.iptables_resync_s) + " s");
  line("net-config-path", o.net_config_path);
  line("static-subnet", o.static_subnet ? core::format_prefix(*o.static_subnet) : "(none)");
  line("static-peer", peers.empty() ? "(none)" : peers);
  line("iface", ifaces.empty() ? "(default-route interface)" : ifaces);
  line("subnet-file", o.subnet_file.empty() ? "(none)" : o.subnet_file);
  line("tun-name", o.tun_name);
  const unsigned workers = o.workers ? o.workers : std::max(1u, online_cpus);
  line("workers", std::to_string(workers) + (o.workers ? "" : " (one per online CPU)"));
  line("cpu-affinity", cpus.empty() ? "(none)" : cpus);
  line("ring-entries", std::to_string(o.ring_entries));
  line("batch", std::to_string(o.batch));
  // As the daemon sizes them when every requested path is granted; the MTU
  // only matters without offload and GRO, where 1472 (a 1500-byte link) is
  // the usual case.
  const BufferPlan bufs = plan_buffers(o, o.tun_offload, o.gro, 1472);
  const bool mtu_sized = !o.buffer_size && (!o.tun_offload || !o.gro);
  line("buffers", std::to_string(bufs.tun_count) + " per TUN ring, " +
                      std::to_string(bufs.udp_count) + " per UDP ring, per worker" +
                      (o.buffers ? "" : " (auto)"));
  line("buffer-size", "TUN " + std::to_string(bufs.tun_bytes) + " B, UDP " +
                          std::to_string(bufs.udp_bytes) + " B" +
                          (o.buffer_size ? ""
                           : mtu_sized   ? " (auto; MTU-sized ones for a TUN MTU of 1472)"
                                         : " (auto)"));
  line("tun-txqueuelen", std::to_string(o.tun_txqueuelen));
  line("socket-rcvbuf", std::to_string(o.socket_rcvbuf));
  line("socket-sndbuf", std::to_string(o.socket_sndbuf));
  line("busy-poll", o.busy_poll_auto ? "auto (up to " + std::to_string(o.busy_poll_us) +
                                           " us after activity, backing off on misses)"
                                     : std::to_string(o.busy_poll_us) + " us" +
                                           (o.busy_poll_us ? " (always)" : " (off)"));
  line("sqpoll", b(o.sqpoll));
  line("tun-offload", b(o.tun_offload));
  line("uso", b(o.uso));
  line("coalesce", b(o.coalesce));
  line("trust-outer-checksum", b(o.trust_outer_checksum));
  line("gso", b(o.gso));
  line("gro", b(o.gro));
  line("multishot", b(o.multishot));
  line("send-zc", b(o.send_zc));
  line("source-port-spread", b(o.source_port_spread));
  line("port-steering", b(o.port_steering));
  line("tun-steering", b(o.tun_steering));
  line("peer-check", b(o.peer_check));
  line("healthz", o.healthz_port ? core::format_ipv4(o.healthz_ip) + ":" + std::to_string(o.healthz_port)
                                 : std::string("off"));
  return out;
}

}  // namespace udpring::io
