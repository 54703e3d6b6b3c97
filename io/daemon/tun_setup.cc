#include "io/daemon/tun_setup.h"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "encap/gso_split.h"
#include "io/kernel/self_test.h"
#include "io/kernel/tun_device.h"
#include "io/netlink/netlink.h"
#include "io/netlink/tun_link.h"

namespace udpring::io {
namespace {

std::string list(const std::vector<core::Ipv4Prefix>& prefixes) {
  std::string out;
  for (const core::Ipv4Prefix& p : prefixes) out += (out.empty() ? "" : ", ") + core::format_prefix(p);
  return out.empty() ? "none" : out;
}

// Why a device left by an earlier run cannot be reattached as it is, or ""
// when it can: this run would otherwise inherit a stale address or route.
std::string mismatch(const LinkState& s, core::Be32 addr, uint32_t mtu,
                     const core::Ipv4Prefix& network) {
  if (!s.multi_queue) return "is a single-queue TUN";
  const core::Ipv4Prefix want{addr, 32};
  if (s.addresses.size() != 1 || s.addresses[0] != want) {
    return "has address(es) " + list(s.addresses) + " where this lease needs " +
           core::format_prefix(want);
  }
  if (s.mtu != mtu) {
    return "has MTU " + std::to_string(s.mtu) + " where this run needs " + std::to_string(mtu);
  }
  for (const core::Ipv4Prefix& r : s.routes) {
    if (r != network) {
      return "has route(s) " + list(s.routes) + " where this run routes only " +
             core::format_prefix(network);
    }
  }
  return "";
}

// A TUN of our name may be left by an earlier run (--keep-tun), or still be
// held by a udpringd that is exiting, or by another daemon. Returns whether
// it is reattached; deletes it when it no longer fits.
bool take_over_existing(const Options& opts, core::Be32 addr, uint32_t mtu,
                        const core::Ipv4Prefix& network) {
  const std::string& name = opts.tun_name;
  std::optional<LinkState> s = read_link_state(name);
  // A restart right after SIGTERM may find the old process still exiting.
  for (int i = 0; s && s->kind == "tun" && s->queues > 0 && i < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s = read_link_state(name);
  }
  if (!s) return false;
  if (s->kind != "tun" || !s->tun) {
    const std::string what = s->kind == "tun" ? "a TAP" : "kind \"" + s->kind + "\"";
    throw std::runtime_error(name + " exists and is not a TUN device (" + what +
                             "): delete it (ip link del " + name +
                             ") or give udpringd another --tun-name");
  }
  if (s->queues > 0) {
    throw std::runtime_error("TUN " + name + " is in use: " + std::to_string(s->queues) +
                             " queue(s) still open in another process after 2 s; is another "
                             "udpringd or flanneld running on this node? (One run with "
                             "--keep-tun would hand its queues over.)");
  }
  if (const std::string why = mismatch(*s, addr, mtu, network); !why.empty()) {
    spdlog::info("TUN {} left by an earlier run {}: deleting it and making it anew", name, why);
    delete_link(name);
    return false;
  }
  spdlog::info("TUN {} kept by an earlier run (address {}/32, MTU {}, route {}): reattaching "
               "its queues",
               name, core::format_ipv4(addr), mtu, list(s->routes));
  return true;
}

// Persistent only once the node is ready (keep_tun_on_exit), so that a
// failed start-up leaves no device behind.
void make_transient(const Options& opts, const TunSetup& t) {
  if (const int err = set_tun_persist(t.control.get(), false); err != 0) {
    throw std::system_error(err, std::generic_category(), "TUNSETPERSIST 0 on " + opts.tun_name);
  }
  if (!opts.keep_tun) {
    spdlog::info("TUN {} is no longer persistent (no --keep-tun): it goes with this udpringd",
                 opts.tun_name);
  }
}

// The queues, with the vnet header when asked for and the kernel takes the
// offloads; otherwise without, rather than a header but no offloads.
void open_queues(const Options& opts, unsigned n, TunSetup& t) {
  t.vnet = opts.tun_offload;
  t.queues.push_back(open_tun_queue(opts.tun_name, t.vnet));
  if (t.vnet) {
    const TunOffload off = enable_tun_offload(t.queues[0].get(), opts.uso);
    t.uso = off.uso;
    if (!off.ok) {
      spdlog::warn("{}; TUN offload off, one packet per read and write", off.error);
      t.queues.clear();
      t.vnet = false;
      t.queues.push_back(open_tun_queue(opts.tun_name, false));
    }
  }
  // A kept device keeps the offloads an earlier run gave it.
  if (!t.vnet && t.reattached) {
    if (const int err = disable_tun_offload(t.queues[0].get()); err != 0) {
      throw std::system_error(err, std::generic_category(), "TUNSETOFFLOAD 0 on " + opts.tun_name);
    }
  }
  for (unsigned i = 1; i < n; ++i) t.queues.push_back(open_tun_queue(opts.tun_name, t.vnet));
  t.control = core::UniqueFd(::dup(t.queues[0].get()));
  if (!t.control) throw std::system_error(errno, std::generic_category(), "dup TUN queue");
  if (t.reattached) make_transient(opts, t);
}

// Returns what places a flow on a queue, for the log.
std::string attach_steering(const Options& opts, unsigned n, TunSetup& t) {
  if (!opts.tun_steering || n < 2) {
    // An earlier run's program would still place flows on a kept device.
    if (t.reattached) (void)detach_tun_steering(t.control.get());
    return "the TUN's flow hash";
  }
  try {
    auto prog = std::make_unique<TunSteering>();
    if (const int err = prog->attach(t.queues[0].get()); err != 0) {
      throw std::system_error(err, std::generic_category(), "TUNSETSTEERINGEBPF");
    }
    t.steering = std::move(prog);
    return "a steering program, new ones in turn";
  } catch (const std::system_error& e) {
    spdlog::warn("TUN steering off: {}; the TUN's flow hash spreads flows over the workers, "
                 "unevenly at times",
                 e.what());
    return "the TUN's flow hash";
  }
}

// Coalesced writes are GSO packets; make sure this kernel takes them.
void test_gso_writes(const Options& opts, core::Be32 addr, TunSetup& t) {
  t.coalesce = opts.coalesce;
  t.coalesce_udp = t.uso;
  if (!t.vnet || !t.coalesce) return;
  for (const bool udp : {false, true}) {
    if (udp && !t.uso) continue;
    const SelfTest r = self_test_tun_gso_write(t.queues[0].get(), addr.raw, udp);
    const char* what = udp ? "UDP" : "TCP";
    if (r.result == SelfTestResult::kPassed) {
      spdlog::info("TUN {} GSO write self-test passed", what);
    } else {
      spdlog::warn("TUN {} GSO write self-test failed ({}); {} coalescing off", what, r.detail, what);
      (udp ? t.coalesce_udp : t.coalesce) = false;
    }
  }
}

// A super-packet of more segments than a worker cuts would be dropped
// (bad_header_tun): a pod's TCP with an MSS under 512 bytes sends 64 KiB of
// them. The kernel cuts those itself once the TUN says how many it takes.
void cap_super_packets(const std::string& tun) {
  const uint32_t got = set_gso_max_segs(tun, encap::kMaxTsoSegments);
  if (got != encap::kMaxTsoSegments) {
    spdlog::warn("TUN {}: the kernel keeps gso_max_segs {} (not {}: Linux 5.19+ sets it); a TSO "
                 "super-packet of more segments is dropped and counted drop_bad_header_tun, so "
                 "pod TCP with an MSS under 512 bytes stalls; --no-tun-offload avoids it",
                 tun, got, encap::kMaxTsoSegments);
  }
}

// What follows the queues, whoever opened them: steering, sysctls, the
// address, MTU and route, and the GSO write self-tests.
void finish(const Options& opts, core::Be32 addr, uint32_t mtu, const core::Ipv4Prefix& network,
            TunSetup& t) {
  const unsigned queues = static_cast<unsigned>(t.queues.size());
  const std::string queue_by = attach_steering(opts, queues, t);
  for (const std::string& failure : tune_tun_sysctls(opts.tun_name)) {
    spdlog::warn("{}: ICMP replies or IPv6 suppression on {} may not work", failure,
                 opts.tun_name);
  }
  if (t.vnet) cap_super_packets(opts.tun_name);
  configure_tun({opts.tun_name, addr, mtu, opts.tun_txqueuelen, network});
  test_gso_writes(opts, addr, t);
  spdlog::info("TUN {}: {} queue(s){}, address {}/32, MTU {}, route {} dev {}", opts.tun_name,
               queues, queues > 1 ? " (flows placed by " + queue_by + ")" : std::string(),
               core::format_ipv4(addr), mtu, core::format_prefix(network), opts.tun_name);
}

}  // namespace

TunSetup set_up_tun(const Options& opts, unsigned queues, core::Be32 addr, uint32_t mtu,
                    const core::Ipv4Prefix& network) {
  TunSetup t;
  t.reattached = take_over_existing(opts, addr, mtu, network);
  open_queues(opts, queues, t);
  finish(opts, addr, mtu, network, t);
  return t;
}

TunSetup adopt_tun(const Options& opts, std::vector<core::UniqueFd> queues, bool vnet, bool uso,
                   core::Be32 addr, uint32_t mtu, const core::Ipv4Prefix& network) {
  TunSetup t;
  t.reattached = true;
  t.queues = std::move(queues);
  t.vnet = vnet;
  t.uso = uso;
  t.control = core::UniqueFd(::dup(t.queues.at(0).get()));
  if (!t.control) throw std::system_error(errno, std::generic_category(), "dup TUN queue");
  make_transient(opts, t);
  finish(opts, addr, mtu, network, t);
  return t;
}

void keep_tun_on_exit(const TunSetup& t, const std::string& name) {
  if (const int err = set_tun_persist(t.control.get(), true); err != 0) {
    spdlog::warn("--keep-tun: TUNSETPERSIST on {} failed ({}); the device goes with udpringd",
                 name, std::strerror(err));
    return;
  }
  spdlog::info("TUN {} is persistent (--keep-tun): it stays, with its address and route, when "
               "udpringd stops, and the next udpringd reattaches it",
               name);
}

}  // namespace udpring::io
