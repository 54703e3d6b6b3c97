#include "io/daemon/tun_setup.h"

#include <spdlog/spdlog.h>

#include <string>
#include <system_error>

#include "io/kernel/self_test.h"
#include "io/kernel/tun_device.h"
#include "io/netlink/netlink.h"

namespace udpring::io {
namespace {

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
  for (unsigned i = 1; i < n; ++i) t.queues.push_back(open_tun_queue(opts.tun_name, t.vnet));
}

// Returns what places a flow on a queue, for the log.
std::string attach_steering(const Options& opts, unsigned n, TunSetup& t) {
  if (!opts.tun_steering || n < 2) return "the TUN's flow hash";
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

}  // namespace

TunSetup set_up_tun(const Options& opts, unsigned queues, core::Be32 addr, uint32_t mtu,
                    const core::Ipv4Prefix& network) {
  TunSetup t;
  open_queues(opts, queues, t);
  const std::string queue_by = attach_steering(opts, queues, t);
  for (const std::string& failure : tune_tun_sysctls(opts.tun_name)) {
    spdlog::warn("{}: ICMP replies or IPv6 suppression on {} may not work", failure,
                 opts.tun_name);
  }
  configure_tun({opts.tun_name, addr, mtu, opts.tun_txqueuelen, network});
  test_gso_writes(opts, addr, t);
  spdlog::info("TUN {}: {} queue(s){}, address {}/32, MTU {}, route {} dev {}", opts.tun_name,
               queues, queues > 1 ? " (flows placed by " + queue_by + ")" : std::string(),
               core::format_ipv4(addr), mtu, core::format_prefix(network), opts.tun_name);
  return t;
}

}  // namespace udpring::io
