#include "encap/udp_encap.h"

#include "core/ipv4.h"

namespace udpring::encap {

size_t encapsulate_batch(std::span<const PacketRef> pkts, const core::RouteSnapshot& routes,
                         std::span<EncapResult> out) noexcept {
  size_t sends = 0;
  for (size_t i = 0; i < pkts.size(); ++i) {
    const PacketRef& p = pkts[i];
    EncapResult& r = out[i];
    r.hop = nullptr;
    if (core::validate_ipv4(p.data, p.len) != core::Ipv4Error::kOk) {
      r.verdict = EncapVerdict::kDropBadHeader;
      continue;
    }
    const core::NextHop* hop = routes.lookup(core::Ipv4View(p.data).dst());
    if (hop == nullptr) {
      r.verdict = EncapVerdict::kDropNoRoute;
      continue;
    }
    core::Ipv4View ip(p.data);
    if (ip.ttl() > 1 && too_big_for(*hop, p.len, ip.dont_fragment())) {
      r.hop = hop;
      r.verdict = EncapVerdict::kDropTooBig;
      continue;
    }
    if (!core::ipv4_decrement_ttl(p.data)) {
      r.verdict = EncapVerdict::kDropTtl;
      continue;
    }
    r.hop = hop;
    r.verdict = EncapVerdict::kSend;
    ++sends;
  }
  return sends;
}

}  // namespace udpring::encap
