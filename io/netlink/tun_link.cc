#include "io/netlink/tun_link.h"

#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>

#include <cstring>

#include "io/netlink/libnl_util.h"

namespace udpring::io {
namespace {

struct Reply {
  bool seen = false;
  int ifindex = 0;
  LinkState state;
};

// IFLA_LINKINFO's kind and, for a TUN, IFLA_INFO_DATA's IFLA_TUN_*
// attributes: libnl has no parser for those, so they are read here.
void parse_link_info(nlattr* linkinfo, LinkState& s) {
  nlattr* info[IFLA_INFO_MAX + 1] = {};
  if (nla_parse_nested(info, IFLA_INFO_MAX, linkinfo, nullptr) < 0) return;
  if (info[IFLA_INFO_KIND]) s.kind = nla_get_string(info[IFLA_INFO_KIND]);
  if (s.kind != "tun" || !info[IFLA_INFO_DATA]) return;
  nlattr* tun[IFLA_TUN_MAX + 1] = {};
  if (nla_parse_nested(tun, IFLA_TUN_MAX, info[IFLA_INFO_DATA], nullptr) < 0) return;
  const auto u8 = [&](int a) { return tun[a] ? nla_get_u8(tun[a]) : uint8_t{0}; };
  s.tun = tun[IFLA_TUN_TYPE] && u8(IFLA_TUN_TYPE) == (IFF_TUN & 0xff);
  s.multi_queue = u8(IFLA_TUN_MULTI_QUEUE) != 0;
  s.persistent = u8(IFLA_TUN_PERSIST) != 0;
  if (tun[IFLA_TUN_NUM_QUEUES]) s.queues = nla_get_u32(tun[IFLA_TUN_NUM_QUEUES]);
}

int on_link(nl_msg* msg, void* arg) {
  auto* out = static_cast<Reply*>(arg);
  nlmsghdr* h = nlmsg_hdr(msg);
  if (h->nlmsg_type != RTM_NEWLINK) return NL_SKIP;
  nlattr* tb[IFLA_MAX + 1] = {};
  if (nlmsg_parse(h, sizeof(ifinfomsg), tb, IFLA_MAX, nullptr) < 0) return NL_SKIP;
  out->seen = true;
  out->ifindex = static_cast<const ifinfomsg*>(nlmsg_data(h))->ifi_index;
  if (tb[IFLA_MTU]) out->state.mtu = nla_get_u32(tb[IFLA_MTU]);
  if (tb[IFLA_LINKINFO]) parse_link_info(tb[IFLA_LINKINFO], out->state);
  return NL_OK;
}

void add_addresses(nl_sock* sock, int ifindex, LinkState& s) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(sock, &raw); err < 0) fail("list addresses", err);
  CachePtr cache(raw);
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    nl_addr* local = rtnl_addr_get_local(a);
    if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_family(a) != AF_INET || !local ||
        nl_addr_get_len(local) != 4) {
      continue;
    }
    core::Ipv4Prefix p;
    std::memcpy(&p.network.raw, nl_addr_get_binary_addr(local), 4);
    p.length = static_cast<uint8_t>(rtnl_addr_get_prefixlen(a));
    s.addresses.push_back(p);
  }
}

void add_routes(nl_sock* sock, int ifindex, LinkState& s) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_route_alloc_cache(sock, AF_INET, 0, &raw); err < 0) fail("list routes", err);
  CachePtr cache(raw);
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    nl_addr* dst = rtnl_route_get_dst(r);
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_nnexthops(r) < 1 || !dst ||
        rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(r, 0)) != ifindex) {
      continue;
    }
    core::Ipv4Prefix p;
    if (nl_addr_get_len(dst) == 4) std::memcpy(&p.network.raw, nl_addr_get_binary_addr(dst), 4);
    p.length = static_cast<uint8_t>(nl_addr_get_prefixlen(dst));
    s.routes.push_back(p);
  }
}

}  // namespace

std::optional<LinkState> read_link_state(const std::string& name) {
  // On a socket of its own: the custom callback must not see other replies.
  SockPtr owned = connect_route();
  nl_sock* sock = owned.get();
  using MsgPtr = std::unique_ptr<nl_msg, decltype(&nlmsg_free)>;
  MsgPtr msg(nlmsg_alloc_simple(RTM_GETLINK, 0), &nlmsg_free);
  if (!msg) throw std::runtime_error("nlmsg_alloc: out of memory");
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  if (nlmsg_append(msg.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0 ||
      nla_put_string(msg.get(), IFLA_IFNAME, name.c_str()) < 0) {
    throw std::runtime_error("building RTM_GETLINK failed");
  }
  Reply reply;
  nl_socket_modify_cb(sock, NL_CB_VALID, NL_CB_CUSTOM, on_link, &reply);
  if (int err = nl_send_auto(sock, msg.get()); err < 0) fail("look up interface " + name, err);
  if (int err = nl_recvmsgs_default(sock); err < 0) {
    if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return std::nullopt;
    fail("look up interface " + name, err);
  }
  if (!reply.seen) return std::nullopt;
  SockPtr lists = connect_route();  // caches with libnl's own callbacks
  add_addresses(lists.get(), reply.ifindex, reply.state);
  add_routes(lists.get(), reply.ifindex, reply.state);
  return reply.state;
}

void delete_link(const std::string& name) {
  SockPtr sock = connect_route();
  LinkPtr link = get_link(sock.get(), 0, name.c_str());
  if (int err = rtnl_link_delete(sock.get(), link.get()); err < 0) fail("delete interface " + name, err);
}

}  // namespace udpring::io
