#include "encap/udp_decap.h"

#include "core/ipv4.h"

namespace udpring::encap {

std::optional<PeerCheck> parse_peer_check(std::string_view text) noexcept {
  if (text == "strict") return PeerCheck::kStrict;
  if (text == "peer") return PeerCheck::kPeer;
  if (text == "off") return PeerCheck::kOff;
  return std::nullopt;
}

std::string_view peer_check_name(PeerCheck mode) noexcept {
  switch (mode) {
    case PeerCheck::kOff: return "off";
    case PeerCheck::kPeer: return "peer";
    case PeerCheck::kStrict: return "strict";
  }
  return "?";
}

size_t decapsulate_batch(std::span<const DecapInput> in, const core::RouteSnapshot& routes,
                         const DecapPolicy& policy, std::span<DecapVerdict> out) noexcept {
  const bool check = policy.mode != PeerCheck::kOff;
  const bool strict = policy.mode == PeerCheck::kStrict;
  // Copied out of `policy`: the TTL stores below go through uint8_t*, which
  // may alias anything, so fields read through a reference would be loaded
  // again for every packet.
  const core::Ipv4Prefix local = policy.local;
  size_t writes = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const DecapInput& d = in[i];
    const bool valid = core::validate_ipv4(d.pkt.data, d.pkt.len) == core::Ipv4Error::kOk;
    const core::Ipv4View inner(d.pkt.data);
    // The common case first, in one route lookup: the inner source's owner
    // is the outer source (which makes the sender a peer), and the inner
    // destination is ours.
    bool passed = false;
    if (strict && valid) {
      const core::NextHop* owner = routes.lookup(inner.src());
      passed = owner != nullptr && owner->addr == d.outer_src && local.contains(inner.dst());
    }
    if (!passed) {
      // Otherwise the reason, in this order: a stranger's datagram counts
      // as such whatever it holds.
      if (check && !routes.is_peer(d.outer_src)) {
        out[i] = DecapVerdict::kDropUnknownPeer;
        continue;
      }
      if (!valid) {
        out[i] = DecapVerdict::kDropBadHeader;
        continue;
      }
      // A peer may only reach our pods: the kernel would otherwise deliver a
      // packet for a host address locally and forward anything else, to
      // other peers (who see us as its sender) or out of the node.
      if (check && !local.contains(inner.dst())) {
        out[i] = DecapVerdict::kDropInnerDstNotLocal;
        continue;
      }
      // Every peer masquerades its pods' traffic to the underlay, so any pod
      // in the cluster can send us datagrams from a peer's address: only the
      // inner source tells a peer's pods from a forged one.
      if (strict) {
        out[i] = DecapVerdict::kDropInnerSrcNotPeer;
        continue;
      }
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
