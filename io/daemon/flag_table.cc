// The table itself: one entry per flag (about 75 of them, flanneld's and
// udpringd's), each with its parser, help text, default and --print-config
// line. It is long because it is the one place every flag is written; the
// helpers above make_table() keep each entry to a few lines, and splitting
// the entries across files would only scatter them.

#include "io/daemon/flag_table.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "io/daemon/memory_plan.h"

namespace udpring::io {
namespace {

using Setter = decltype(FlagValue::set);

[[noreturn]] void reject(const std::string& spelling, const std::string& value, const std::string& why) {
  throw UsageError(flag_dashes(spelling) + " \"" + value + "\": " + why);
}

std::string range_text(unsigned lo, unsigned hi) {
  return "a whole number from " + std::to_string(lo) + " to " + std::to_string(hi);
}

unsigned parse_unsigned(const std::string& spelling, const std::string& v, unsigned lo, unsigned hi) {
  unsigned n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || p != v.data() + v.size() || n < lo || n > hi) {
    reject(spelling, v, "expected " + range_text(lo, hi));
  }
  return n;
}

constexpr const char* kBoolAccepts = "true or false";
constexpr const char* kCidrAccepts = "an IPv4 CIDR like 10.5.1.0/24";
constexpr const char* kIpv4Accepts = "an IPv4 address";

core::Ipv4Prefix parse_cidr(const std::string& spelling, const std::string& v) {
  auto p = core::parse_prefix(v);
  if (!p) reject(spelling, v, std::string("expected ") + kCidrAccepts);
  return *p;
}

core::Be32 parse_ip(const std::string& spelling, const std::string& v) {
  auto ip = core::parse_ipv4(v);
  if (!ip) reject(spelling, v, std::string("expected ") + kIpv4Accepts);
  return *ip;
}

// Splits at commas, keeping empty items so that "0,,1" is refused rather
// than read as "0,1".
std::vector<std::string> split_commas(const std::string& v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    const size_t comma = std::min(v.find(',', start), v.size());
    out.push_back(v.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// What a flag left out means; the defaults live in struct Options alone.
const Options& defaults() {
  static const Options d;
  return d;
}

// The factories below take the field once and derive the setter, what is
// accepted and the default from it, so those three cannot disagree.

FlagValue switch_on(bool Options::*field) {
  return {true, kBoolAccepts,
          [field](Options& o, const std::string& s, const std::string& v) { o.*field = parse_flag_bool(s, v); },
          defaults().*field ? "true" : "false"};
}

// For "--no-x" flags: the flag given means the field is false.
FlagValue switch_off(bool Options::*field) {
  return {true, kBoolAccepts,
          [field](Options& o, const std::string& s, const std::string& v) { o.*field = !parse_flag_bool(s, v); },
          defaults().*field ? "false" : "true"};
}

template <class T>
FlagValue whole(T Options::*field, unsigned lo, unsigned hi) {
  return {false, range_text(lo, hi),
          [field, lo, hi](Options& o, const std::string& s, const std::string& v) {
            o.*field = static_cast<T>(parse_unsigned(s, v, lo, hi));
          },
          // A default outside the range (0 for "automatic") is not a
          // value one could write, so it is left to the flag's note.
          defaults().*field >= static_cast<T>(lo) ? std::to_string(defaults().*field) : ""};
}

FlagValue text(std::string Options::*field, std::string accepts) {
  return {false, std::move(accepts),
          [field](Options& o, const std::string&, const std::string& v) { o.*field = v; },
          defaults().*field};
}

FlagValue each_adds(std::vector<std::string> Options::*field, std::string accepts) {
  return {false, std::move(accepts),
          [field](Options& o, const std::string&, const std::string& v) { (o.*field).push_back(v); },
          ""};
}

FlagValue ipv4(std::optional<core::Be32> Options::*field) {
  return {false, kIpv4Accepts,
          [field](Options& o, const std::string& s, const std::string& v) { o.*field = parse_ip(s, v); },
          ""};
}

FlagValue custom(bool is_bool, std::string accepts, Setter set, std::string default_value = "") {
  return {is_bool, std::move(accepts), std::move(set), std::move(default_value)};
}

// flanneld flags that udpringd accepts, so that a flanneld command line or
// DaemonSet works unchanged, but does not implement yet. Each one given is
// listed in Options::unimplemented for the daemon to warn about: none is
// silently ignored.
FlagValue unimplemented(bool is_bool) {
  return {is_bool, is_bool ? kBoolAccepts : "any value",
          [is_bool](Options& o, const std::string& s, const std::string& v) {
            if (is_bool) parse_flag_bool(s, v);
            o.unimplemented.push_back("--" + s + "=" + v);
          },
          ""};
}

const char* on_off(bool v) { return v ? "on" : "off"; }

FlagShown shown_on_off(std::string key, bool Options::*field) {
  return {std::move(key), [field](const Options& o, unsigned) { return std::string(on_off(o.*field)); }};
}

FlagShown shown_text(std::string key, std::string Options::*field) {
  return {std::move(key), [field](const Options& o, unsigned) { return o.*field; }};
}

template <class T>
FlagShown shown_number(std::string key, T Options::*field, std::string unit = "") {
  return {std::move(key),
          [field, unit](const Options& o, unsigned) { return std::to_string(o.*field) + unit; }};
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string or_none(std::string v, const char* none = "(none)") { return v.empty() ? none : v; }

std::vector<Flag> make_table() {
  using G = FlagGroup;
  std::vector<Flag> t;
  auto add = [&t](Flag f) { t.push_back(std::move(f)); };

  // Leases.
  add({.group = G::kLeases,
       .name = "subnet-mgr",
       .metavar = "etcd|file|static|kube",
       .value = custom(false, "etcd, file, static or kube",
                       [](Options& o, const std::string& s, const std::string& v) {
                         if (v != "etcd" && v != "file" && v != "static" && v != "kube") {
                           reject(s, v, "expected etcd, file, static or kube");
                         }
                         o.subnet_mgr = v;
                       },
                       defaults().subnet_mgr),
       .default_note = "as flanneld",
       .help = "Where leases come from. etcd: flannel's keys in etcd v3, shared with stock flanneld "
               "nodes. file: the embedded store, a directory of lease files (--lease-dir) for nodes "
               "on one machine, e.g. in network namespaces; no server needed. static: "
               "--static-subnet and --static-peer. kube: the Kubernetes API, as flanneld's "
               "--kube-subnet-mgr: the lease is this Node's spec.podCIDR, the peers are the Nodes "
               "annotated by flannel, and the network config is --net-config-path.",
       .shown = shown_text("subnet-mgr", &Options::subnet_mgr)});
  add({.group = G::kLeases,
       .name = "kube-subnet-mgr",
       .value = custom(true, kBoolAccepts,
                       [](Options& o, const std::string& s, const std::string& v) {
                         if (parse_flag_bool(s, v)) o.subnet_mgr = "kube";
                       },
                       "false"),
       .help = "flanneld's spelling of --subnet-mgr=kube."});
  add({.group = G::kLeases,
       .name = "kube-api-url",
       .metavar = "URL",
       .value = custom(false, "an http:// or https:// URL",
                       [](Options& o, const std::string& s, const std::string& v) {
                         if (!v.empty() && v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0) {
                           reject(s, v, "expected an http:// or https:// URL");
                         }
                         o.kube_api_url = v;
                       }),
       .default_note = "in a pod: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
       .help = "--subnet-mgr=kube: the API server. With --kubeconfig-file, it replaces the "
               "cluster's server; alone, the pod's service-account token and CA are used when "
               "mounted.",
       .shown = {"kube-api", [](const Options& o, unsigned) -> std::optional<std::string> {
                   if (o.subnet_mgr != "kube") return std::nullopt;
                   if (!o.kubeconfig_file.empty()) return "kubeconfig " + o.kubeconfig_file;
                   return o.kube_api_url.empty() ? std::string("in-cluster") : o.kube_api_url;
                 }}});
  add({.group = G::kLeases,
       .name = "kubeconfig-file",
       .metavar = "FILE",
       .value = text(&Options::kubeconfig_file, "a kubeconfig file"),
       .default_note = "none: in-cluster",
       .help = "--subnet-mgr=kube: a kubeconfig; its current-context's server, CA and user "
               "(token, tokenFile or client certificate) are used."});
  add({.group = G::kLeases,
       .name = "kube-annotation-prefix",
       .metavar = "PREFIX",
       .value = custom(false, "a DNS-style annotation prefix",
                       [](Options& o, const std::string& s, const std::string& v) {
                         if (v.empty() || v.find('/') != std::string::npos) {
                           reject(s, v, "expected a prefix such as flannel.alpha.coreos.com");
                         }
                         o.kube_annotation_prefix = v;
                       },
                       defaults().kube_annotation_prefix),
       .default_note = "as flanneld",
       .help = "--subnet-mgr=kube: the prefix of the Node annotations read and written "
               "(PREFIX/public-ip and others); every node of a cluster must use the same.",
       .shown = {"kube-annotation-prefix", [](const Options& o, unsigned) -> std::optional<std::string> {
                   if (o.subnet_mgr != "kube") return std::nullopt;
                   return o.kube_annotation_prefix;
                 }}});
  add({.group = G::kLeases,
       .name = "set-node-network-unavailable",
       .value = switch_on(&Options::set_node_network_unavailable),
       .default_note = "as flanneld",
       .help = "--subnet-mgr=kube: once forwarding, set the Node's condition "
               "NetworkUnavailable=False (reason FlannelIsUp)."});
  add({.group = G::kLeases,
       .name = "etcd-endpoints",
       .metavar = "URLS",
       .value = custom(false, "comma-separated http:// or https:// URLs",
                       [](Options& o, const std::string& s, const std::string& v) {
                         o.etcd_endpoints.clear();
                         for (std::string ep : split_commas(v)) {
                           if (ep.rfind("http://", 0) != 0 && ep.rfind("https://", 0) != 0) {
                             reject(s, v, "\"" + ep + "\" is not an http:// or https:// URL");
                           }
                           while (!ep.empty() && ep.back() == '/') ep.pop_back();
                           o.etcd_endpoints.push_back(ep);
                         }
                       },
                       join(defaults().etcd_endpoints, ",")),
       .help = "etcd client URLs, tried in order.",
       .shown = {"etcd-endpoints", [](const Options& o, unsigned) -> std::optional<std::string> {
                   if (o.subnet_mgr != "etcd") return std::nullopt;
                   return join(o.etcd_endpoints, ",");
                 }}});
  add({.group = G::kLeases,
       .name = "etcd-prefix",
       .metavar = "PATH",
       .value = custom(false, "a key path starting with /",
                       [](Options& o, const std::string& s, const std::string& v) {
                         if (v.empty() || v[0] != '/') reject(s, v, "must start with /");
                         o.etcd_prefix = v;
                       },
                       defaults().etcd_prefix),
       .help = "Key prefix: config at PATH/config, leases at PATH/subnets/a.b.c.d-len.",
       .shown = {"etcd-prefix", [](const Options& o, unsigned) -> std::optional<std::string> {
                   if (o.subnet_mgr != "etcd") return std::nullopt;
                   return o.etcd_prefix;
                 }}});
  add({.group = G::kLeases,
       .name = "etcd-certfile",
       .metavar = "FILE",
       .value = text(&Options::etcd_certfile, "a PEM file"),
       .help = "Client certificate; TLS (1.2+) is used when it and --etcd-keyfile are both set.",
       .shown = {"etcd-tls", [](const Options& o, unsigned) -> std::optional<std::string> {
                   if (o.subnet_mgr != "etcd") return std::nullopt;
                   return on_off(!o.etcd_certfile.empty() && !o.etcd_keyfile.empty());
                 }}});
  add({.group = G::kLeases,
       .name = "etcd-keyfile",
       .metavar = "FILE",
       .value = text(&Options::etcd_keyfile, "a PEM file"),
       .help = "The private key of --etcd-certfile."});
  add({.group = G::kLeases,
       .name = "etcd-cafile",
       .metavar = "FILE",
       .value = text(&Options::etcd_cafile, "a PEM file"),
       .default_note = "the system's CA bundle",
       .help = "CA bundle that signed etcd's server certificate."});
  add({.group = G::kLeases,
       .name = "etcd-username",
       .metavar = "NAME",
       .value = text(&Options::etcd_username, "an etcd user name"),
       .help = "etcd user, with --etcd-password (etcd's authentication; a token is fetched and "
               "renewed).",
       .shown = {"etcd-auth", [](const Options& o, unsigned) -> std::optional<std::string> {
                   if (o.subnet_mgr != "etcd") return std::nullopt;
                   return o.etcd_username.empty() ? "off" : "user " + o.etcd_username;
                 }}});
  add({.group = G::kLeases,
       .name = "etcd-password",
       .metavar = "SECRET",
       .value = text(&Options::etcd_password, "any text"),
       .help = "The password of --etcd-username."});
  add({.group = G::kLeases,
       .name = "lease-dir",
       .metavar = "DIR",
       .value = custom(false, "a directory",
                       [](Options& o, const std::string& s, const std::string& v) {
                         if (v.empty()) reject(s, v, "expected a directory");
                         o.lease_dir = v;
                       },
                       defaults().lease_dir),
       .help = "--subnet-mgr=file: the lease directory, with an optional DIR/config (else "
               "--net-config-path is read) and one file per lease in DIR/subnets.",
       .shown = {"lease-dir", [](const Options& o, unsigned) -> std::optional<std::string> {
                   if (o.subnet_mgr != "file") return std::nullopt;
                   return o.lease_dir;
                 }}});
  add({.group = G::kLeases,
       .name = "subnet-lease-renew-margin",
       .metavar = "MIN",
       .value = whole(&Options::renew_margin_min, 1, 1439),  // flanneld exits outside this
       .default_note = "as flanneld",
       .help = "Renew the lease MIN minutes before it expires.",
       .shown = shown_number("subnet-lease-renew-margin", &Options::renew_margin_min, " min")});
  add({.group = G::kLeases,
       .name = "subnet-lease-ttl",
       .metavar = "SEC",
       .value = whole(&Options::lease_ttl_s, 2, 86400 * 365),
       .default_note = "flannel's",
       .help = "Lease lifetime in seconds; shorter values are for tests. With a TTL at or below the "
               "renew margin, renewal is half-way.",
       .shown = shown_number("subnet-lease-ttl", &Options::lease_ttl_s, " s")});
  add({.group = G::kLeases,
       .name = "net-config-path",
       .metavar = "PATH",
       .value = text(&Options::net_config_path, "a file"),
       .help = "flannel's net-conf.json (Network, SubnetLen, SubnetMin/Max, Backend.Type \"udp\", "
               "Backend.Port) for the static mode, and for the file mode when DIR/config is "
               "absent. The etcd mode reads PREFIX/config from etcd instead.",
       .shown = shown_text("net-config-path", &Options::net_config_path)});
  add({.group = G::kLeases,
       .name = "static-subnet",
       .metavar = "CIDR",
       .value = custom(false, kCidrAccepts,
                       [](Options& o, const std::string& s, const std::string& v) {
                         o.static_subnet = parse_cidr(s, v);
                       }),
       .help = "static: this node's lease, e.g. 10.5.1.0/24, inside Network.",
       .shown = {"static-subnet", [](const Options& o, unsigned) {
                   return o.static_subnet ? core::format_prefix(*o.static_subnet) : "(none)";
                 }}});
  add({.group = G::kLeases,
       .name = "static-peer",
       .metavar = "SUBNET=IP",
       .value = custom(false, "SUBNET=IP, e.g. 10.5.2.0/24=192.168.1.20",
                       [](Options& o, const std::string& s, const std::string& v) {
                         const auto eq = v.find('=');
                         if (eq == std::string::npos) {
                           reject(s, v, "expected SUBNET=IP, e.g. 10.5.2.0/24=192.168.1.20");
                         }
                         auto ip = core::parse_ipv4(std::string_view(v).substr(eq + 1));
                         if (!ip) reject(s, v, "\"" + v.substr(eq + 1) + "\" is not an IPv4 address");
                         o.static_peers.push_back({parse_cidr(s, v.substr(0, eq)), *ip});
                       }),
       .help = "static: a peer's lease and public IP, e.g. 10.5.2.0/24=192.168.1.20. Repeatable. "
               "Traffic for SUBNET goes to IP:Backend.Port.",
       .shown = {"static-peer", [](const Options& o, unsigned) {
                   std::vector<std::string> peers;
                   for (const StaticPeer& p : o.static_peers) {
                     peers.push_back(core::format_prefix(p.subnet) + "=" + core::format_ipv4(p.public_ip));
                   }
                   return or_none(join(peers, " "));
                 }}});
  add({.group = G::kLeases,
       .name = "subnet-file",
       .metavar = "PATH",
       .value = text(&Options::subnet_file, "a file, or empty"),
       .help = "Where to write flannel's subnet.env (FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, "
               "FLANNEL_IPMASQ) for the CNI plugin, atomically, mode 0644, after setup and before "
               "\"ready\". An empty value writes none.",
       .shown = {"subnet-file", [](const Options& o, unsigned) { return or_none(o.subnet_file); }}});

  // External interface.
  add({.group = G::kInterface,
       .name = "iface",
       .metavar = "NAME|IP",
       .value = each_adds(&Options::ifaces, "an interface name or IPv4 address"),
       .default_note = "the interface of the IPv4 default route",
       .help = "Repeatable, first match wins.",
       .shown = {"iface", [](const Options& o, unsigned) {
                   return or_none(join(o.ifaces, ","), "(default-route interface)");
                 }}});
  add({.group = G::kInterface,
       .name = "iface-regex",
       .metavar = "REGEX",
       .value = each_adds(&Options::iface_regex, "an ECMAScript regular expression"),
       .help = "Repeatable, tried after --iface: matched against every IPv4 address first, then "
               "against interface names.",
       .shown = {"iface-regex", [](const Options& o, unsigned) { return or_none(join(o.iface_regex, " ")); }}});
  add({.group = G::kInterface,
       .name = "iface-can-reach",
       .metavar = "IP",
       .value = ipv4(&Options::iface_can_reach),
       .help = "The interface (and source address) the kernel would use to reach IP.",
       .shown = {"iface-can-reach", [](const Options& o, unsigned) {
                   return o.iface_can_reach ? core::format_ipv4(*o.iface_can_reach) : "(none)";
                 }}});
  add({.group = G::kInterface,
       .name = "public-ip",
       .metavar = "IP",
       .value = ipv4(&Options::public_ip),
       .default_note = "the interface's address",
       .help = "The address peers send to (the lease's PublicIP). Without --iface, --iface-regex "
               "or --iface-can-reach, the interface that owns IP is used; behind NAT give --iface "
               "too.",
       .shown = {"public-ip", [](const Options& o, unsigned) {
                   return o.public_ip ? core::format_ipv4(*o.public_ip) : "(interface address)";
                 }}});

  // Masquerade and forwarding.
  add({.group = G::kMasquerade,
       .name = "ip-masq",
       .value = switch_on(&Options::ip_masq),
       .help = "Install flannel's NAT rules (chain FLANNEL-POSTRTG in nat, jumped to from "
               "POSTROUTING): pod traffic leaving the overlay is masqueraded.",
       .shown = shown_on_off("ip-masq", &Options::ip_masq)});
  add({.group = G::kMasquerade,
       .name = "ip-masq-fully-random-disable",
       .value = switch_on(&Options::ip_masq_random_fully_disable),
       .help = "Do not add --random-fully to the MASQUERADE rules.",
       .shown = {"ip-masq-random-fully", [](const Options& o, unsigned) {
                   return std::string(on_off(o.ip_masq && !o.ip_masq_random_fully_disable));
                 }}});
  add({.group = G::kMasquerade,
       .name = "iptables-forward-rules",
       .value = switch_on(&Options::iptables_forward_rules),
       .help = "Accept overlay traffic in FORWARD (chain FLANNEL-FWD).",
       .shown = shown_on_off("iptables-forward-rules", &Options::iptables_forward_rules)});
  add({.group = G::kMasquerade,
       .name = "iptables-resync",
       .metavar = "SEC",
       .value = whole(&Options::iptables_resync_s, 1, 86400),
       .help = "Check the rules every SEC seconds and rebuild them, in order, when one is missing.",
       .shown = shown_number("iptables-resync", &Options::iptables_resync_s, " s")});

  // Data plane.
  add({.group = G::kDataPlane,
       .name = "tun-name",
       .metavar = "NAME",
       .value = custom(false, "an interface name of 1-15 characters",
                       [](Options& o, const std::string& s, const std::string& v) {
                         if (v.empty() || v.size() > 15) {
                           reject(s, v, "expected an interface name of 1-15 characters");
                         }
                         o.tun_name = v;
                       },
                       defaults().tun_name),
       .help = "TUN device name.",
       .shown = shown_text("tun-name", &Options::tun_name)});
  add({.group = G::kDataPlane,
       .name = "workers",
       .metavar = "N",
       .value = whole(&Options::workers, 0, 256),
       .default_note = "one per online CPU, at most 4",
       .help = "Forwarding threads, each with its own io_uring, TUN queue, UDP socket and buffers "
               "(about 10 MiB each at peak with the default buffers). The default stops at 4 so that "
               "memory does not grow with the node's core count; set more where the traffic "
               "needs more cores.",
       .shown = {"workers", [](const Options& o, unsigned online_cpus) {
                   return std::to_string(resolved_workers(o, online_cpus)) +
                          (o.workers ? "" : " (one per online CPU, at most 4)");
                 }}});
  add({.group = G::kDataPlane,
       .name = "tun-txqueuelen",
       .metavar = "N",
       .value = whole(&Options::tun_txqueuelen, 0, 1000000),
       .help = "TUN transmit queue length (packets queued for udpringd to read). 0 keeps the "
               "kernel's 500, which drops under bursts.",
       .shown = shown_number("tun-txqueuelen", &Options::tun_txqueuelen)});
  add({.group = G::kDataPlane,
       .name = "keep-tun",
       .value = switch_on(&Options::keep_tun),
       .help = "Leave the TUN, its address and its route in place when udpringd stops (a "
               "persistent device), and reattach to it at the next start when its address, MTU "
               "and routes still fit (else it is deleted and made anew). A restart then drops "
               "only what is routed into the TUN while no udpringd reads it; without it the "
               "route goes too, and that traffic follows the default route or is refused. A "
               "udpringd started while this one runs (a DaemonSet rollout with maxSurge) takes "
               "its TUN queues and UDP sockets as they are, with what the kernel queued on them, "
               "when its lease, MTU, address, port, worker count and offloads are the same, and "
               "this one then idles until stopped; otherwise this one closes its own and the "
               "new one builds the device. Under systemd (NOTIFY_SOCKET set) a stopping "
               "udpringd gives its queues and sockets to the unit's fd store "
               "(FileDescriptorStoreMax=), so that a restart loses nothing either: the next one "
               "takes them on the same terms. Off by default, as stock flanneld: the device would "
               "outlive an uninstall (`ip link del flannel0` removes it). =false also takes a "
               "kept device back.",
       .shown = shown_on_off("keep-tun", &Options::keep_tun)});
  add({.group = G::kDataPlane,
       .name = "no-multishot",
       .value = switch_off(&Options::multishot),
       .help = "Read the TUN with plain reads even where READ_MULTISHOT (Linux 6.7+) is available. "
               "For A/B tests.",
       .shown = shown_on_off("multishot", &Options::multishot)});
  add({.group = G::kDataPlane,
       .name = "no-tun-offload",
       .value = switch_off(&Options::tun_offload),
       .help = "Open the TUN without IFF_VNET_HDR and offloads: one packet per read and per "
               "write. By default the TUN hands over 64 KiB TCP super-packets (TSO), which "
               "udpringd cuts into MTU-sized datagrams without copying payload, and accepts "
               "merged TCP segments on write. The wire format is the same either way.",
       .shown = shown_on_off("tun-offload", &Options::tun_offload)});
  add({.group = G::kDataPlane,
       .name = "no-uso",
       .value = switch_off(&Options::uso),
       .help = "With TUN offload on, leave UDP out of it: no UDP super-packets from the TUN, no "
               "merged UDP writes. By default USO is used when the kernel has it (Linux 6.2+).",
       .shown = shown_on_off("uso", &Options::uso)});
  add({.group = G::kDataPlane,
       .name = "no-coalesce",
       .value = switch_off(&Options::coalesce),
       .help = "With TUN offload on, still write received TCP segments to the TUN one by one "
               "instead of merging runs of one flow.",
       .shown = shown_on_off("coalesce", &Options::coalesce)});
  add({.group = G::kDataPlane,
       .name = "no-trust-outer-checksum",
       .value = switch_off(&Options::trust_outer_checksum),
       .help = "Sum every segment's TCP/UDP checksum before merging it. By default segments that "
               "arrived in a UDP GRO receive are merged unsummed: the kernel built that receive "
               "only from datagrams whose non-zero UDP checksum, which covers the whole inner "
               "packet, it validated (or from a GSO send on this host). Single datagrams, which "
               "may carry checksum 0, are always summed.",
       .shown = shown_on_off("trust-outer-checksum", &Options::trust_outer_checksum)});
  add({.group = G::kDataPlane,
       .name = "no-gso",
       .value = switch_off(&Options::gso),
       .help = "Send one datagram per sendmsg. By default consecutive packets to one peer leave "
               "as a single UDP GSO sendmsg (UDP_SEGMENT), cut into ordinary datagrams by the "
               "kernel: the wire is unchanged. Turned off by itself if the device rejects GSO "
               "(EIO).",
       .shown = shown_on_off("gso", &Options::gso)});
  add({.group = G::kDataPlane,
       .name = "no-gro",
       .value = switch_off(&Options::gro),
       .help = "Do not enable UDP_GRO on the socket. By default the kernel may deliver "
               "back-to-back datagrams from one peer as one buffer, which udpringd splits "
               "without copying.",
       .shown = shown_on_off("gro", &Options::gro)});
  add({.group = G::kDataPlane,
       .name = "no-source-port-spread",
       .value = switch_off(&Options::source_port_spread),
       .help = "Send everything from Backend.Port, so one of the peer's workers receives all of "
               "it. By default, with 2+ workers, each worker sends from its own UDP source port "
               "(see --no-port-steering; the destination port stays Backend.Port, and flanneld "
               "accepts any source port).",
       .shown = shown_on_off("source-port-spread", &Options::source_port_spread)});
  add({.group = G::kDataPlane,
       .name = "no-port-steering",
       .value = switch_off(&Options::port_steering),
       .help = "Send from ports the kernel picks and leave the receiving worker to the kernel's "
               "hash, which often puts all of a peer's traffic on one worker. By default, with "
               "2+ workers, worker w sends from port base+w (base a multiple of 840, from 33600 "
               "up) and a BPF program on the receiving sockets hands a datagram from port p to "
               "worker (p mod 840) mod N: worker w talks to the peer's worker w, each flow keeps "
               "one worker per node and the workers share the flows.",
       .shown = shown_on_off("port-steering", &Options::port_steering)});
  add({.group = G::kDataPlane,
       .name = "no-tun-steering",
       .value = switch_off(&Options::tun_steering),
       .help = "Leave the choice of TUN queue to the TUN's flow hash, which puts 4 flows 2-2 on "
               "two workers only 3 times in 8. By default, with 2+ workers, an eBPF program on "
               "the TUN (TUNSETSTEERINGEBPF) sends each new TCP or UDP flow out of the next queue "
               "in turn, so the workers share the flows evenly (fragments and other protocols go "
               "by a hash of the addresses).",
       .shown = shown_on_off("tun-steering", &Options::tun_steering)});
  add({.group = G::kDataPlane,
       .name = "send-zc",
       .negation = "no-send-zc",
       .value = switch_on(&Options::send_zc),
       .help = "Send GSO trains with IORING_OP_SENDMSG_ZC (zero copy). Off by default: a train has "
               "more iovecs than a zero-copy send may pin, so the kernel refuses it (EMSGSIZE) "
               "and the worker goes back to copying, resending that train (logged once, "
               "send_zc_fallback).",
       .shown = shown_on_off("send-zc", &Options::send_zc)});
  add({.group = G::kDataPlane,
       .name = "icmp-time-exceeded",
       .value = switch_on(&Options::icmp_time_exceeded),
       .help = "Answer a packet whose TTL runs out here, in either direction, with ICMP Time "
               "Exceeded from the flannel0 address, so that traceroute shows the overlay hop. "
               "=false drops it silently, as stock flanneld.",
       .shown = shown_on_off("icmp-time-exceeded", &Options::icmp_time_exceeded)});
  add({.group = G::kDataPlane,
       .name = "icmp-rate",
       .metavar = "N",
       .value = whole(&Options::icmp_rate, 0, 1000000),
       .help = "ICMP errors (Net Unreachable, Time Exceeded) sent per second for packets from one "
               "source address, per worker; 0 sends one for every packet. Each one not sent is "
               "counted (icmp_rate_limited).",
       .shown = shown_number("icmp-rate", &Options::icmp_rate, "/s")});
  add({.group = G::kDataPlane,
       .name = "icmp-burst",
       .metavar = "N",
       .value = whole(&Options::icmp_burst, 1, 1000000),
       .help = "ICMP errors one source may get at once before --icmp-rate applies.",
       .shown = shown_number("icmp-burst", &Options::icmp_burst)});
  add({.group = G::kDataPlane,
       .name = "peer-check",
       .metavar = "MODE",
       .value = custom(false, "strict, peer or off",
                       [](Options& o, const std::string& s, const std::string& v) {
                         const auto mode = encap::parse_peer_check(v);
                         if (!mode) reject(s, v, "expected strict, peer or off");
                         o.peer_check = *mode;
                       },
                       std::string(encap::peer_check_name(defaults().peer_check))),
       .help = "Which datagrams on the port reach the pods. strict: from a peer's public IP, to an "
               "address in this node's lease, from an address in that peer's lease. peer: the "
               "same without the inner source check (a peer's node may then forge its pods' "
               "sources). off: anything, as stock flanneld (whoever reaches the port can inject "
               "packets and use the node as a relay). Refusals are counted by reason: "
               "drop_unknown_peer, drop_inner_dst_not_local, drop_inner_src_not_peer.",
       .shown = {"peer-check", [](const Options& o, unsigned) {
                   return std::optional<std::string>(std::string(encap::peer_check_name(o.peer_check)));
                 }}});
  add({.group = G::kDataPlane,
       .name = "no-peer-check",
       .value = custom(true, kBoolAccepts,
                       [](Options& o, const std::string& s, const std::string& v) {
                         if (parse_flag_bool(s, v)) o.peer_check = encap::PeerCheck::kOff;
                       },
                       "false"),
       .help = "The older spelling of --peer-check=off."});

  // Tuning.
  add({.group = G::kTuning,
       .name = "cpu-affinity",
       .metavar = "LIST",
       .value = custom(false, "comma-separated CPU numbers from 0 to 4095",
                       [](Options& o, const std::string& s, const std::string& v) {
                         o.cpu_affinity.clear();
                         for (const std::string& cpu : split_commas(v)) {
                           o.cpu_affinity.push_back(static_cast<int>(parse_unsigned(s, cpu, 0, 4095)));
                         }
                       }),
       .default_note = "no pinning",
       .help = "Pin worker i to CPU LIST[i mod n], e.g. 0,1.",
       .shown = {"cpu-affinity", [](const Options& o, unsigned) {
                   std::vector<std::string> cpus;
                   for (int c : o.cpu_affinity) cpus.push_back(std::to_string(c));
                   return or_none(join(cpus, ","));
                 }}});
  add({.group = G::kTuning,
       .name = "ring-entries",
       .metavar = "N",
       .value = whole(&Options::ring_entries, 8, 32768),
       .help = "Submission queue entries per worker ring.",
       .shown = shown_number("ring-entries", &Options::ring_entries)});
  add({.group = G::kTuning,
       .name = "batch",
       .metavar = "N",
       .value = whole(&Options::batch, 1, 1024),
       .help = "Packets classified per encapsulate/decapsulate call.",
       .shown = shown_number("batch", &Options::batch)});
  add({.group = G::kTuning,
       .name = "buffers",
       .metavar = "N",
       .value = custom(false, "a power of two from 16 to 32768",
                       [](Options& o, const std::string& s, const std::string& v) {
                         unsigned n = 0;
                         try {
                           n = parse_unsigned(s, v, 16, 32768);
                         } catch (const UsageError&) {
                           reject(s, v, "expected a power of two from 16 to 32768");
                         }
                         if (n & (n - 1)) reject(s, v, "expected a power of two from 16 to 32768");
                         o.buffers = n;
                       }),
       .default_note = "automatic (1024, or 64 for the 64 KiB buffers of TUN offload and UDP GRO)",
       .help = "Buffers per provided-buffer ring.",
       .shown = {"buffers", [](const Options& o, unsigned online_cpus) {
                   // As the daemon sizes them when every requested path is granted.
                   const BufferPlan p = plan_buffers(o, o.tun_offload, o.gro, 1472);
                   const MemoryPlan m =
                       plan_memory(o, p, o.tun_offload, resolved_workers(o, online_cpus));
                   return std::to_string(p.tun_count) + " per TUN ring, " + std::to_string(p.udp_count) +
                          " per UDP ring, per worker" + (o.buffers ? "" : " (auto)") + "; up to " +
                          format_mib(m.per_worker) + " per worker under load, " +
                          format_mib(m.total) + " in all";
                 }}});
  add({.group = G::kTuning,
       .name = "buffer-size",
       .metavar = "BYTES",
       .value = whole(&Options::buffer_size, 1024, 1u << 20),
       .default_note = "automatic (enough for the enabled features: MTU-sized without offloads, "
                       "64 KiB with them)",
       .help = "Bytes per buffer. A value too small for an enabled feature is refused, naming the "
               "feature.",
       .shown = {"buffer-size", [](const Options& o, unsigned) {
                   // The MTU only matters without offload and GRO, where 1472
                   // (a 1500-byte link) is the usual case.
                   const BufferPlan p = plan_buffers(o, o.tun_offload, o.gro, 1472);
                   const bool mtu_sized = !o.buffer_size && (!o.tun_offload || !o.gro);
                   return "TUN " + std::to_string(p.tun_bytes) + " B, UDP " + std::to_string(p.udp_bytes) +
                          " B" +
                          (o.buffer_size ? ""
                           : mtu_sized   ? " (auto; MTU-sized ones for a TUN MTU of 1472)"
                                         : " (auto)");
                 }}});
  add({.group = G::kTuning,
       .name = "socket-rcvbuf",
       .metavar = "BYTES",
       .value = whole(&Options::socket_rcvbuf, 4096, 1u << 30),
       .default_note = "4 MiB",
       .help = "UDP receive buffer (SO_RCVBUFFORCE, else SO_RCVBUF).",
       .shown = shown_number("socket-rcvbuf", &Options::socket_rcvbuf)});
  add({.group = G::kTuning,
       .name = "socket-sndbuf",
       .metavar = "BYTES",
       .value = whole(&Options::socket_sndbuf, 4096, 1u << 30),
       .default_note = "4 MiB",
       .help = "UDP send buffer (SO_SNDBUFFORCE, else SO_SNDBUF).",
       .shown = shown_number("socket-sndbuf", &Options::socket_sndbuf)});
  add({.group = G::kTuning,
       .name = "busy-poll",
       .metavar = "auto|eager|USEC",
       .value = custom(false, "auto, eager, or microseconds from 0 to 1000000",
                       [](Options& o, const std::string& s, const std::string& v) {
                         if (v == "auto" || v == "eager") {
                           o.busy_poll_us = defaults().busy_poll_us;
                           o.busy_poll_mode = v == "auto" ? encap::BusyPollMode::kCheap
                                                          : encap::BusyPollMode::kEager;
                           return;
                         }
                         try {
                           o.busy_poll_us = parse_unsigned(s, v, 0, 1000000);
                         } catch (const UsageError&) {
                           reject(s, v, "expected auto, eager, or microseconds from 0 to 1000000");
                         }
                         o.busy_poll_mode = encap::BusyPollMode::kAlways;
                       },
                       encap::busy_poll_mode_name(defaults().busy_poll_mode)),
       .help = "Spin for completions before sleeping. A sleep and wake-up costs a worker about 15 us "
               "of CPU and as much latency per packet on a VM. auto: spin up to 100 us, only right "
               "after traffic, not within 1 ms of a bulk turn (16 KiB or more read at once), and "
               "only where it pays: each kind of wait (after a packet from the TUN, after one from "
               "a peer) backs off when its spins find nothing or find it only after 25 us, so "
               "spinning costs about what sleeping costs. eager: the same, but a spin that finds "
               "its packet within 100 us never backs off: request/response traffic keeps a core "
               "spinning, for a shorter round trip (on a 2-vCPU VM up to 14 us less at the median, "
               "for about 60 us more daemon CPU per round trip). USEC: always spin up to USEC. "
               "0: never spin.",
       .shown = {"busy-poll", [](const Options& o, unsigned) {
                   if (o.busy_poll_mode != encap::BusyPollMode::kAlways) {
                     return std::string(encap::busy_poll_mode_name(o.busy_poll_mode)) + " (up to " +
                            std::to_string(o.busy_poll_us) + " us after activity, backing off " +
                            (o.busy_poll_mode == encap::BusyPollMode::kCheap
                                 ? "on misses and on hits after 25 us)"
                                 : "on misses)");
                   }
                   return std::to_string(o.busy_poll_us) + " us" + (o.busy_poll_us ? " (always)" : " (off)");
                 }}});
  add({.group = G::kTuning,
       .name = "sqpoll",
       .value = switch_on(&Options::sqpoll),
       .help = "Let a kernel thread submit (IORING_SETUP_SQPOLL). Costs a core; falls back to "
               "normal submission if refused.",
       .shown = shown_on_off("sqpoll", &Options::sqpoll)});

  // Other.
  add({.group = G::kOther,
       .name = "healthz-ip",
       .metavar = "IP",
       .value = custom(false, kIpv4Accepts,
                       [](Options& o, const std::string& s, const std::string& v) {
                         o.healthz_ip = parse_ip(s, v);
                       },
                       core::format_ipv4(defaults().healthz_ip)),
       .default_note = "every address, as flanneld",
       .help = "Address of the health and metrics endpoint (--healthz-port)."});
  add({.group = G::kOther,
       .name = "healthz-port",
       .metavar = "PORT",
       .value = whole(&Options::healthz_port, 0, 65535),
       .default_note = "off, as flanneld",
       .help = "Serve GET /healthz (200 while running), /readyz (503 until the TUN, sockets, "
               "workers and subnet.env are in place, then 200) and /metrics (Prometheus text: "
               "packets and bytes each way, drops by reason, offload counters, fast paths in "
               "use, routes). 0: no endpoint.",
       .shown = {"healthz", [](const Options& o, unsigned) {
                   return o.healthz_port ? core::format_ipv4(o.healthz_ip) + ":" + std::to_string(o.healthz_port)
                                         : std::string("off");
                 }}});
  add({.group = G::kOther,
       .name = "print-config",
       .value = switch_on(&Options::print_config),
       .help = "Print the effective settings (automatic values resolved) and the kernel features "
               "detected, then exit. As root it also runs the daemon's offload checks (TUN "
               "offload, USO, TUN GSO writes, UDP GSO) in a network namespace of its own, which "
               "vanishes after.",
       .from_env = false});
  add({.group = G::kOther,
       .name = "v",
       .metavar = "N",
       .value = whole(&Options::verbosity, 0, 10),
       .help = "Log verbosity: 0 info, 1 debug, 2 trace."});
  add({.group = G::kOther,
       .name = "help",
       .aliases = {"h"},
       .value = switch_on(&Options::help),
       .help = "Print the help text and exit.",
       .from_env = false});
  add({.group = G::kOther,
       .name = "help-markdown",
       .value = switch_on(&Options::help_markdown),
       .help = "Print the flag reference as Markdown, the content of docs/flags.md, and exit.",
       .from_env = false});
  add({.group = G::kOther,
       .name = "version",
       .value = switch_on(&Options::version),
       .help = "Print the version and exit.",
       .from_env = false});

  // flanneld's, accepted and not implemented.
  add({.group = G::kCompat,
       .name = "public-ipv6",
       .metavar = "IP",
       .value = unimplemented(false),
       .help = "flanneld: the IPv6 address peers send to."});
  add({.group = G::kCompat,
       .name = "ip-blackhole-route",
       .value = unimplemented(true),
       .help = "flanneld: a blackhole route for this node's whole lease."});
  add({.group = G::kCompat,
       .name = "vmodule",
       .metavar = "PATTERN",
       .value = unimplemented(false),
       .help = "flanneld (glog): per-file log verbosity."});
  add({.group = G::kCompat,
       .name = "log_backtrace_at",
       .metavar = "FILE:LINE",
       .value = unimplemented(false),
       .help = "flanneld (glog): log a stack trace when logging at FILE:LINE."});
  return t;
}

}  // namespace

bool parse_flag_bool(const std::string& spelling, const std::string& v) {
  if (v == "true" || v == "1" || v == "t" || v == "T" || v == "TRUE" || v == "True") return true;
  if (v == "false" || v == "0" || v == "f" || v == "F" || v == "FALSE" || v == "False") return false;
  reject(spelling, v, "expected true or false");
}

const std::vector<FlagGroupInfo>& flag_groups() {
  static const std::vector<FlagGroupInfo> groups = {
      {FlagGroup::kLeases, "Leases", "Where this node's subnet and its peers' come from."},
      {FlagGroup::kInterface, "External interface",
       "Its MTU sets the TUN's (MTU - 28); the UDP socket binds to its address."},
      {FlagGroup::kMasquerade, "Masquerade and forwarding", "iptables, in this node's network namespace."},
      {FlagGroup::kDataPlane, "Data plane", ""},
      {FlagGroup::kTuning, "Tuning",
       "The defaults are the fastest safe settings; see docs/tuning.md for measured effects."},
      {FlagGroup::kOther, "Other", ""},
      {FlagGroup::kCompat, "flanneld compatibility",
       "flanneld flags udpringd does not implement yet. They are accepted so that a flanneld "
       "command line or DaemonSet works unchanged, and each one given is logged as a warning "
       "naming it."},
  };
  return groups;
}

const std::vector<Flag>& flag_table() {
  static const std::vector<Flag> table = make_table();
  return table;
}

std::vector<std::string> flag_spellings(const Flag& f) {
  std::vector<std::string> out{f.name};
  out.insert(out.end(), f.aliases.begin(), f.aliases.end());
  if (!f.negation.empty()) out.push_back(f.negation);
  return out;
}

std::string flag_env_name(std::string_view spelling) {
  std::string out = "FLANNELD_";
  for (char c : spelling) {
    out += (c == '-' || c == '.') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string flag_dashes(std::string_view spelling) {
  return (spelling.size() == 1 ? "-" : "--") + std::string(spelling);
}

}  // namespace udpring::io
