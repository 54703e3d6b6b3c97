#include "io/netlink/netlink.h"

#include "io/netlink/libnl_util.h"

#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <sys/socket.h>

#include <netlink/msg.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <regex>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace udpring::io {
namespace {

struct AddrEntry {
  int ifindex;
  core::Be32 addr;
  uint32_t flags;  // IFA_F_*
};

std::vector<AddrEntry> ipv4_addresses(nl_sock* sock) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(sock, &raw); err < 0) fail("list addresses", err);
  CachePtr cache(raw);
  std::vector<AddrEntry> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_family(a) != AF_INET) continue;
    nl_addr* local = rtnl_addr_get_local(a);
    if (!local || nl_addr_get_len(local) != 4) continue;
    AddrEntry e{rtnl_addr_get_ifindex(a), {}, static_cast<uint32_t>(rtnl_addr_get_flags(a))};
    std::memcpy(&e.addr.raw, nl_addr_get_binary_addr(local), 4);
    out.push_back(e);
  }
  return out;
}

int default_route_ifindex(nl_sock* sock) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_route_alloc_cache(sock, AF_INET, 0, &raw); err < 0) fail("list routes", err);
  CachePtr cache(raw);
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN) continue;
    nl_addr* dst = rtnl_route_get_dst(r);
    if (dst && nl_addr_get_prefixlen(dst) != 0) continue;
    if (rtnl_route_get_nnexthops(r) < 1) continue;
    const int ifindex = rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(r, 0));
    if (ifindex > 0) return ifindex;
  }
  throw std::runtime_error(
      "no IPv4 default route to pick the external interface from; pass --iface NAME|IP");
}

ExternalInterface describe_link(nl_sock* sock, int ifindex, core::Be32 addr) {
  LinkPtr link = get_link(sock, ifindex, nullptr);
  ExternalInterface ext;
  ext.name = rtnl_link_get_name(link.get());
  ext.ifindex = ifindex;
  ext.addr = addr;
  ext.mtu = rtnl_link_get_mtu(link.get());
  return ext;
}

// flannel's GetInterfaceIP4Addrs: only global and link-local unicast count
// (a regex like "\.0\.1$" must not pick lo's 127.0.0.1), deprecated ones never.
bool usable(const AddrEntry& e) {
  const uint32_t h = e.addr.host();
  if (h == 0 || h == 0xffffffffu) return false;  // unspecified, broadcast
  if ((h >> 24) == 127) return false;             // loopback
  if ((h >> 28) == 0xe) return false;             // multicast
  return (e.flags & IFA_F_DEPRECATED) == 0;
}

bool link_local(core::Be32 a) { return (a.host() >> 16) == 0xa9fe; }  // 169.254/16

// The usable addresses of one interface, most preferred first: global before
// link-local, permanent before dynamic (flannel's compareAddrs), then primary
// before secondary and otherwise the kernel's order.
std::vector<core::Be32> preferred_addresses(const std::vector<AddrEntry>& addrs, int ifindex) {
  std::vector<AddrEntry> mine;
  for (const AddrEntry& e : addrs) {
    if (e.ifindex == ifindex && usable(e)) mine.push_back(e);
  }
  const auto rank = [](const AddrEntry& e) {
    return std::tuple(link_local(e.addr), (e.flags & IFA_F_PERMANENT) == 0,
                      (e.flags & IFA_F_SECONDARY) != 0);
  };
  std::stable_sort(mine.begin(), mine.end(),
                   [&](const AddrEntry& x, const AddrEntry& y) { return rank(x) < rank(y); });
  std::vector<core::Be32> out;
  for (const AddrEntry& e : mine) out.push_back(e.addr);
  return out;
}

std::optional<core::Be32> first_address(const std::vector<AddrEntry>& addrs, int ifindex) {
  const std::vector<core::Be32> all = preferred_addresses(addrs, ifindex);
  if (all.empty()) return std::nullopt;
  return all.front();
}

// (ifindex, name) of every link, by ifindex.
std::vector<std::pair<int, std::string>> link_names(nl_sock* sock) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_link_alloc_cache(sock, AF_UNSPEC, &raw); err < 0) fail("list links", err);
  CachePtr cache(raw);
  std::vector<std::pair<int, std::string>> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* l = reinterpret_cast<rtnl_link*>(o);
    out.emplace_back(rtnl_link_get_ifindex(l), rtnl_link_get_name(l));
  }
  std::sort(out.begin(), out.end());  // Go's net.Interfaces() order, which the regex rule walks
  return out;
}

struct RouteGet {
  int oif = 0;
  std::optional<core::Be32> prefsrc;
};

int on_route_get(nl_msg* msg, void* arg) {
  auto* out = static_cast<RouteGet*>(arg);
  nlattr* tb[RTA_MAX + 1] = {};
  if (nlmsg_parse(nlmsg_hdr(msg), sizeof(rtmsg), tb, RTA_MAX, nullptr) < 0) return NL_SKIP;
  if (tb[RTA_OIF]) out->oif = static_cast<int>(nla_get_u32(tb[RTA_OIF]));
  if (tb[RTA_PREFSRC] && nla_len(tb[RTA_PREFSRC]) == 4) {
    core::Be32 a;
    std::memcpy(&a.raw, nla_data(tb[RTA_PREFSRC]), 4);
    out->prefsrc = a;
  }
  return NL_OK;
}

// `ip route get DST`: the kernel's own answer, policy routing included. On a
// socket of its own: the custom callback must not see other requests' replies.
RouteGet route_get(core::Be32 dst) {
  SockPtr owned = connect_route();
  nl_sock* sock = owned.get();
  using MsgPtr = std::unique_ptr<nl_msg, decltype(&nlmsg_free)>;
  MsgPtr msg(nlmsg_alloc_simple(RTM_GETROUTE, 0), &nlmsg_free);
  if (!msg) throw std::runtime_error("nlmsg_alloc: out of memory");
  rtmsg rt{};
  rt.rtm_family = AF_INET;
  rt.rtm_dst_len = 32;
  if (nlmsg_append(msg.get(), &rt, sizeof rt, NLMSG_ALIGNTO) < 0 ||
      nla_put(msg.get(), RTA_DST, 4, &dst.raw) < 0) {
    throw std::runtime_error("building RTM_GETROUTE failed");
  }
  RouteGet out;
  nl_socket_modify_cb(sock, NL_CB_VALID, NL_CB_CUSTOM, on_route_get, &out);
  if (int err = nl_send_auto(sock, msg.get()); err < 0) fail("route get", err);
  if (int err = nl_recvmsgs_default(sock); err < 0) {
    fail("--iface-can-reach " + core::format_ipv4(dst) + ": no route", err);
  }
  if (out.oif <= 0) {
    throw std::runtime_error("--iface-can-reach " + core::format_ipv4(dst) +
                             ": the kernel's route names no output interface");
  }
  return out;
}

std::regex compile(const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw std::runtime_error("--iface-regex \"" + pattern + "\" is not a valid regex: " + e.what());
  }
}

// --iface VALUE: an IPv4 address selects its interface and that very address
// (any address, as flannel's GetInterfaceByIP); a name, its preferred address.
std::optional<ExternalInterface> by_iface(nl_sock* sock, const std::vector<AddrEntry>& addrs,
                                          const std::string& want) {
  if (auto ip = core::parse_ipv4(want)) {
    for (const AddrEntry& e : addrs) {
      if (e.addr == *ip) return describe_link(sock, e.ifindex, e.addr);
    }
    return std::nullopt;
  }
  rtnl_link* raw = nullptr;
  if (rtnl_link_get_kernel(sock, 0, want.c_str(), &raw) < 0) return std::nullopt;
  LinkPtr link(raw);
  const int ifindex = rtnl_link_get_ifindex(link.get());
  if (auto addr = first_address(addrs, ifindex)) return describe_link(sock, ifindex, *addr);
  return std::nullopt;
}

// --iface-regex PATTERN: every interface's addresses first, then the names.
// A name whose interface has no usable address is passed over, where flannel
// would stop at it and fail this pattern: only configurations flannel rejects
// behave differently.
std::optional<ExternalInterface> by_regex(nl_sock* sock, const std::vector<AddrEntry>& addrs,
                                          const std::vector<std::pair<int, std::string>>& links,
                                          const std::string& pattern) {
  const std::regex re = compile(pattern);
  // Go's MatchString: a match anywhere in the text.
  for (const auto& link : links) {
    for (core::Be32 a : preferred_addresses(addrs, link.first)) {
      if (std::regex_search(core::format_ipv4(a), re)) return describe_link(sock, link.first, a);
    }
  }
  for (const auto& [ifindex, name] : links) {
    if (!std::regex_search(name, re)) continue;
    if (auto addr = first_address(addrs, ifindex)) return describe_link(sock, ifindex, *addr);
  }
  return std::nullopt;
}

// --iface-can-reach IP: the route's output device, with the route's preferred
// source (`ip route get`'s "src") or else that device's preferred address.
ExternalInterface by_route(nl_sock* sock, const std::vector<AddrEntry>& addrs, core::Be32 dst) {
  const RouteGet r = route_get(dst);
  const auto addr = r.prefsrc ? r.prefsrc : first_address(addrs, r.oif);
  ExternalInterface ext = describe_link(sock, r.oif, addr.value_or(core::Be32{}));
  if (!addr) {
    throw std::runtime_error("--iface-can-reach " + core::format_ipv4(dst) + ": " + ext.name +
                             " has no IPv4 address");
  }
  return ext;
}

ExternalInterface by_default_route(nl_sock* sock, const std::vector<AddrEntry>& addrs) {
  const int ifindex = default_route_ifindex(sock);
  const auto addr = first_address(addrs, ifindex);
  ExternalInterface ext = describe_link(sock, ifindex, addr.value_or(core::Be32{}));
  if (!addr) throw std::runtime_error("default-route interface " + ext.name + " has no IPv4 address");
  return ext;
}

std::string join(const std::vector<std::string>& items, const std::string& open, const std::string& close) {
  std::string out;
  for (const std::string& i : items) out += (out.empty() ? "" : ", ") + open + i + close;
  return out;
}

// flanneld's main(): with any of --iface, --iface-regex, --iface-can-reach,
// each kind is tried only when every earlier one found nothing, so a host
// without the named interface still starts on a regex or route match.
ExternalInterface resolve(const IfaceSelection& sel) {
  SockPtr sock = connect_route();
  const std::vector<AddrEntry> addrs = ipv4_addresses(sock.get());
  if (sel.ifaces.empty() && sel.iface_regex.empty() && !sel.can_reach) {
    if (!sel.public_ip) return by_default_route(sock.get(), addrs);
    // Since flannel v0.12.0 (477d9fa1) the interface is the one owning it.
    if (auto ext = by_iface(sock.get(), addrs, core::format_ipv4(*sel.public_ip))) return *ext;
    throw std::runtime_error("--public-ip " + core::format_ipv4(*sel.public_ip) +
                             " is not on any interface; with a NAT'ed public IP give --iface too");
  }
  std::vector<std::string> failed;
  for (const std::string& want : sel.ifaces) {
    if (auto ext = by_iface(sock.get(), addrs, want)) return *ext;
  }
  if (!sel.ifaces.empty()) {
    failed.push_back("no interface with an IPv4 address matches --iface " + join(sel.ifaces, "", ""));
  }
  if (!sel.iface_regex.empty()) {
    const auto links = link_names(sock.get());
    for (const std::string& pattern : sel.iface_regex) {
      if (auto ext = by_regex(sock.get(), addrs, links, pattern)) return *ext;
    }
    failed.push_back("--iface-regex " + join(sel.iface_regex, "\"", "\"") +
                     " matched no interface with an IPv4 address");
  }
  if (sel.can_reach) {
    // The last resort: its failure joins the others' in one message.
    try {
      return by_route(sock.get(), addrs, *sel.can_reach);
    } catch (const std::runtime_error& e) {
      failed.push_back(e.what());
    }
  }
  std::string what;
  for (const std::string& f : failed) what += (what.empty() ? "" : "; ") + f;
  throw std::runtime_error(what);
}

}  // namespace

ExternalInterface find_external_interface(const IfaceSelection& sel) {
  ExternalInterface ext = resolve(sel);
  ext.public_ip = sel.public_ip.value_or(ext.addr);
  return ext;
}

ExternalInterface find_external_interface(const std::vector<std::string>& ifaces) {
  return find_external_interface(IfaceSelection{ifaces, {}, {}, {}});
}

std::vector<core::Be32> local_ipv4_addresses() {
  SockPtr sock = connect_route();
  std::vector<core::Be32> out;
  for (const AddrEntry& e : ipv4_addresses(sock.get())) out.push_back(e.addr);
  return out;
}

void configure_tun(const TunConfig& cfg) {
  SockPtr sock = connect_route();
  LinkPtr link = get_link(sock.get(), 0, cfg.name.c_str());
  const int ifindex = rtnl_link_get_ifindex(link.get());
  const std::string addr_text = core::format_ipv4(cfg.addr) + "/32";

  AddrObjPtr addr(rtnl_addr_alloc());
  NlAddrPtr local = make_addr(cfg.addr, 32);
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_family(addr.get(), AF_INET);
  rtnl_addr_set_local(addr.get(), local.get());
  rtnl_addr_set_prefixlen(addr.get(), 32);
  if (int err = rtnl_addr_add(sock.get(), addr.get(), 0); err < 0 && err != -NLE_EXIST) {
    fail("add address " + addr_text + " to " + cfg.name, err);
  }

  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_mtu(change.get(), cfg.mtu);
  if (cfg.txqueuelen) rtnl_link_set_txqlen(change.get(), cfg.txqueuelen);
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (int err = rtnl_link_change(sock.get(), link.get(), change.get(), 0); err < 0) {
    fail("set MTU " + std::to_string(cfg.mtu) + " and up on " + cfg.name, err);
  }

  RoutePtr route(rtnl_route_alloc());
  NlAddrPtr dst = make_addr(cfg.network.network, cfg.network.length);
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_dst(route.get(), dst.get());
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
  rtnl_route_set_protocol(route.get(), RTPROT_BOOT);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(nh, ifindex);
  rtnl_route_add_nexthop(route.get(), nh);  // the route owns nh from here on
  if (int err = rtnl_route_add(sock.get(), route.get(), NLM_F_EXCL); err < 0 && err != -NLE_EXIST) {
    fail("add route " + core::format_prefix(cfg.network) + " dev " + cfg.name, err);
  }
}

uint32_t set_gso_max_segs(const std::string& name, uint32_t segs) {
  SockPtr sock = connect_route();
  LinkPtr link = get_link(sock.get(), 0, name.c_str());
  // libnl can read this attribute but has no setter: a bare RTM_NEWLINK.
  std::unique_ptr<nl_msg, decltype(&nlmsg_free)> msg(nlmsg_alloc_simple(RTM_NEWLINK, 0), nlmsg_free);
  if (!msg) throw std::runtime_error("nlmsg_alloc: out of memory");
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = rtnl_link_get_ifindex(link.get());
  const std::string what = "set gso_max_segs " + std::to_string(segs) + " on " + name;
  if (int err = nlmsg_append(msg.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO); err < 0) fail(what, err);
  if (int err = nla_put_u32(msg.get(), IFLA_GSO_MAX_SEGS, segs); err < 0) fail(what, err);
  if (int err = nl_send_sync(sock.get(), msg.release()); err < 0) fail(what, err);
  LinkPtr now = get_link(sock.get(), 0, name.c_str());
  uint32_t got = 0;
  if (rtnl_link_get_gso_max_segs(now.get(), &got) < 0) return 0;
  return got;
}

}  // namespace udpring::io
