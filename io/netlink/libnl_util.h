#pragma once
// What the files of io/netlink share: owners for libnl objects, so that
// every early throw releases them, and the few calls each file starts with.
// Internal to this library.

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <sys/socket.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "core/ipv4_addr.h"

namespace udpring::io {

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct AddrObjDeleter {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct NlAddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
struct RouteDeleter {
  void operator()(rtnl_route* r) const { rtnl_route_put(r); }
};
using SockPtr = std::unique_ptr<nl_sock, SockDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;
using AddrObjPtr = std::unique_ptr<rtnl_addr, AddrObjDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlAddrDeleter>;
using RoutePtr = std::unique_ptr<rtnl_route, RouteDeleter>;

[[noreturn]] inline void fail(const std::string& what, int nl_err) {
  throw std::runtime_error(what + ": " + nl_geterror(nl_err));
}

inline SockPtr connect_route() {
  SockPtr sock(nl_socket_alloc());
  if (!sock) throw std::runtime_error("nl_socket_alloc: out of memory");
  if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0) fail("netlink connect", err);
  return sock;
}

inline LinkPtr get_link(nl_sock* sock, int ifindex, const char* name) {
  rtnl_link* link = nullptr;
  if (int err = rtnl_link_get_kernel(sock, ifindex, name, &link); err < 0) {
    fail(std::string("interface ") + (name ? name : std::to_string(ifindex)), err);
  }
  return LinkPtr(link);
}

inline NlAddrPtr make_addr(core::Be32 a, int prefix_len) {
  NlAddrPtr addr(nl_addr_build(AF_INET, &a.raw, 4));
  if (!addr) throw std::runtime_error("nl_addr_build: out of memory");
  nl_addr_set_prefixlen(addr.get(), prefix_len);
  return addr;
}

}  // namespace udpring::io
