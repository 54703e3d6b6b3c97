#include "io/options.h"

#include <charconv>
#include <functional>
#include <map>
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
         if (v != "static") {
           throw UsageError("--" + f + " \"" + v + "\": only \"static\" is implemented so far");
         }
         o.subnet_mgr = v;
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
      {"no-coalesce", {true, [](Options& o, auto& f, auto& v) { o.coalesce = !parse_bool(f, v); }}},
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

Options parse_options(int argc, const char* const* argv) {
  Options o;
  const auto& table = flag_table();
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
    const auto it = table.find(name);
    if (it == table.end()) throw UsageError("unknown flag --" + name + " (see --help)");
    if (!value) {
      if (it->second.is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw UsageError("flag --" + name + " needs a value");
      }
    }
    it->second.apply(o, name, *value);
  }
  return o;
}

std::string usage_text() {
  return R"(udpringd: an io_uring drop-in for flannel's udp backend.

Usage: udpringd [flags]     (flags take one or two dashes; --name=value or --name value)

Lease and network:
  --subnet-mgr=static        Where leases come from. Only "static" is implemented so far:
                             this node's lease and its peers are given by the flags below.
  --net-config-path=PATH     flannel's net-conf.json (Network, SubnetLen, Backend.Type "udp",
                             Backend.Port). Default /etc/kube-flannel/net-conf.json.
  --static-subnet=CIDR       This node's lease, e.g. 10.5.1.0/24; must lie inside Network.
                             flannel0 gets its base address as /32.
  --static-peer=CIDR=IP      A peer's lease and public IP, e.g. 10.5.2.0/24=192.168.1.20.
                             Repeatable. Traffic for CIDR goes to IP:Backend.Port.
  --iface=NAME|IP            External interface (repeatable, first match wins). Its MTU sets
                             flannel0's (MTU - 28) and the UDP socket binds to its address.
                             Default: the interface of the IPv4 default route.

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
  --no-coalesce              With TUN offload on, still write received TCP segments to the
                             TUN one by one instead of merging runs of one flow.
  --no-gso                   Send one datagram per sendmsg. By default consecutive packets to
                             one peer leave as a single UDP GSO sendmsg (UDP_SEGMENT), cut
                             into ordinary datagrams by the kernel: the wire is unchanged.
                             Turned off by itself if the device rejects GSO (EIO).
  --no-gro                   Do not enable UDP_GRO on the socket. By default the kernel may
                             deliver back-to-back datagrams from one peer as one buffer,
                             which udpringd splits without copying.
  --no-peer-check            Accept datagrams from any source address. By default a datagram
                             whose source is not a known peer's public IP is dropped and
                             counted (drop_unknown_peer); stock flanneld accepts anything.

Other:
  -v=N                       Log verbosity: 0 info, 1 debug, 2 trace.
  --help, -h                 This text.
  --version                  Print the version and exit.

Signals: SIGTERM/SIGINT stop cleanly (the TUN and its route disappear, as with flanneld);
SIGUSR1 logs one "stats:" line with every counter summed over the workers.
)";
}

}  // namespace udpring::io
