// UDP -> TUN, up to the TUN write: one receive from a peer (maybe several
// datagrams merged by UDP GRO), cut into datagrams as
// UdpToTun::split_gro does, then encap::decapsulate_batch.
//
// Input: [flags][source][gso_size: 2 bytes, big-endian][payload...]
//   flags bits 0-1: --peer-check (0 off, 1 peer, 2 and 3 strict)
//   flags bit 2: the kernel verified the outer checksum (a GRO receive)
//   source: which of fuzz::kSources the receive came from
//   gso_size: the UDP_GRO cmsg's segment size; 0 = one datagram
// Every datagram sits in a buffer of its own exact size, so a read past
// it is an ASan report.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/ipv4.h"
#include "encap/udp_decap.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_routes.h"

namespace {

using namespace udpring;
using encap::DecapVerdict;

constexpr size_t kHeader = 4;

// Four bytes of a packet validate_ipv4 accepted, as they are on the wire.
uint32_t load(const std::vector<uint8_t>& p, size_t off) {
  uint32_t v;
  std::memcpy(&v, p.data() + off, 4);
  return v;
}
constexpr uint32_t kMaxGroSegments = 64;  // io/dataplane/udp_to_tun.h

core::Be32 inner_src(const std::vector<uint8_t>& p) { return core::Be32{load(p, 12)}; }
core::Be32 inner_dst(const std::vector<uint8_t>& p) { return core::Be32{load(p, 16)}; }

bool header_checksum_ok(const uint8_t* p) {
  return core::ones_sum(p, size_t{p[0] & 0x0fu} * 4) == 0xffff;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeader) return 0;
  const uint8_t flags = data[0];
  const core::Be32 src = fuzz::kSources[data[1] % fuzz::kSources.size()];
  const uint32_t len = static_cast<uint32_t>(size - kHeader);
  uint32_t seg = len;
  const uint32_t gso_size = (uint32_t{data[2]} << 8) | data[3];
  if (gso_size > 0 && gso_size < len) seg = gso_size;
  const encap::PeerCheck mode = (flags & 3) == 0   ? encap::PeerCheck::kOff
                               : (flags & 3) == 1 ? encap::PeerCheck::kPeer
                                                  : encap::PeerCheck::kStrict;
  const bool check_peer = mode != encap::PeerCheck::kOff;
  const bool strict = mode == encap::PeerCheck::kStrict;
  const bool outer_verified = flags & 4;
  const core::RouteSnapshot& routes = fuzz::routes();
  FUZZ_CHECK(routes.lookup(fuzz::kOwnLease.network) == nullptr);

  std::vector<std::vector<uint8_t>> bufs;
  const uint8_t* payload = data + kHeader;
  for (uint32_t off = 0; off < len && bufs.size() < kMaxGroSegments; off += seg) {
    bufs.emplace_back(payload + off, payload + off + std::min(seg, len - off));
  }
  const std::vector<std::vector<uint8_t>> before = bufs;
  std::vector<encap::DecapInput> in;
  for (auto& b : bufs) in.push_back({{b.data(), static_cast<uint32_t>(b.size()), outer_verified}, src});
  std::vector<DecapVerdict> verdicts(in.size());

  const size_t writes =
      encap::decapsulate_batch(in, routes, {mode, fuzz::kOwnLease}, verdicts);

  size_t counted = 0;
  for (size_t i = 0; i < bufs.size(); ++i) {
    const std::vector<uint8_t>& was = before[i];
    const std::vector<uint8_t>& now = bufs[i];
    if (verdicts[i] != DecapVerdict::kWrite) {
      FUZZ_CHECK(now == was);  // a dropped datagram is left as it came
    }
    switch (verdicts[i]) {
      case DecapVerdict::kWrite:
        ++counted;
        FUZZ_CHECK(core::validate_ipv4(was.data(), was.size()) == core::Ipv4Error::kOk);
        FUZZ_CHECK(!check_peer || routes.is_peer(src));
        // Never a relay, never a forged source.
        FUZZ_CHECK(!check_peer || fuzz::kOwnLease.contains(inner_dst(now)));
        if (strict) {
          const core::NextHop* owner = routes.lookup(inner_src(now));
          FUZZ_CHECK(owner != nullptr && owner->addr == src);
        }
        FUZZ_CHECK(was[8] > 1 && now[8] == was[8] - 1);
        // Only the TTL and the header checksum change, and a header that
        // verified still does.
        for (size_t b = 0; b < now.size(); ++b) {
          if (b != 8 && b != 10 && b != 11) FUZZ_CHECK(now[b] == was[b]);
        }
        FUZZ_CHECK(!header_checksum_ok(was.data()) || header_checksum_ok(now.data()));
        break;
      case DecapVerdict::kDropBadHeader:
        FUZZ_CHECK(core::validate_ipv4(was.data(), was.size()) != core::Ipv4Error::kOk);
        break;
      case DecapVerdict::kDropUnknownPeer:
        FUZZ_CHECK(check_peer && !routes.is_peer(src));
        break;
      case DecapVerdict::kDropInnerDstNotLocal:
        FUZZ_CHECK(check_peer && routes.is_peer(src));
        FUZZ_CHECK(core::validate_ipv4(was.data(), was.size()) == core::Ipv4Error::kOk);
        FUZZ_CHECK(!fuzz::kOwnLease.contains(inner_dst(now)));
        break;
      case DecapVerdict::kDropInnerSrcNotPeer: {
        FUZZ_CHECK(strict && routes.is_peer(src));
        FUZZ_CHECK(fuzz::kOwnLease.contains(inner_dst(now)));
        const core::NextHop* owner = routes.lookup(inner_src(now));
        FUZZ_CHECK(owner == nullptr || owner->addr != src);
        break;
      }
      case DecapVerdict::kDropTtl:
        FUZZ_CHECK(was[8] <= 1);
        break;
      default:
        break;
    }
  }
  FUZZ_CHECK(counted == writes);
  return 0;
}
