#include "encap/udp_decap.h"

#include "core/ipv4.h"

namespace udpring::encap {

size_t decapsulate_batch(std::span<const DecapInput> in, const core::RouteSnapshot& routes,
                         bool check_peer, std::span<DecapVerdict> out) noexcept {
  size_t writes = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const DecapInput& d = in[i];
    if (check_peer && !routes.is_peer(d.outer_src)) {
      out[i] = DecapVerdict::kDropUnknownPeer;
      continue;
    }
    if (core::validate_ipv4(d.pkt.data, d.pkt.len) != core::Ipv4Error::kOk) {
      out[i] = DecapVerdict::kDropBadHeader;
      continue;
    }
    if (!core::ipv4_decrement_ttl(d.pkt.data)) {
      out[i] = DecapVerdict::kDropTtl;
      continue;
    }
    out[i] = DecapVerdict::kWrite;
    ++writes;
  }
  return writes;
}

}  // namespace udpring::encap
