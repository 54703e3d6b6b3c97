#include "encap/tcp_offload.h"

#include <algorithm>
#include <cstring>

#include "core/ipv4.h"

namespace udpring::encap {
namespace {

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpAck = 0x10;
constexpr uint8_t kTcpCwr = 0x80;

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void store16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// Folded (not inverted) sum of the TCP/UDP pseudo header of an IPv4 packet.
uint32_t pseudo_sum(const uint8_t* ip, uint8_t proto, uint32_t l4_len) {
  uint32_t s = load16(ip + 12) + load16(ip + 14) + load16(ip + 16) + load16(ip + 18) + proto + l4_len;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return s;
}

// The shape every coalescing candidate must have: TCP/IPv4 without IP
// options, not a fragment, only ACK (and PSH), some payload.
struct TcpView {
  size_t doff = 0;
  size_t payload = 0;
  uint8_t flags = 0;
};

bool tcp_candidate(const PacketRef& p, TcpView& v) {
  const uint8_t* ip = p.data;
  if (p.len < 40 || ip[0] != 0x45 || ip[9] != core::kIpProtoTcp) return false;
  if ((load16(ip + 6) & 0x3fff) != 0) return false;  // MF or an offset: a fragment
  const uint8_t* tcp = ip + 20;
  v.doff = (size_t{tcp[12]} >> 4) * 4;
  if (v.doff < 20 || 20 + v.doff >= p.len) return false;  // needs payload
  v.payload = p.len - 20 - v.doff;
  v.flags = tcp[13];
  return v.flags == kTcpAck || v.flags == (kTcpAck | kTcpPsh);
}

// May `p` follow `prev` in a run that started with `first`?
bool can_follow(const PacketRef& first, const TcpView& fv, const PacketRef& prev,
                const TcpView& pv, const PacketRef& p, const TcpView& v, size_t total) {
  const uint8_t* a = first.data;
  const uint8_t* b = p.data;
  if (v.doff != fv.doff || v.payload > fv.payload || pv.payload != fv.payload) return false;
  if ((pv.flags & kTcpPsh) != 0) return false;  // PSH ends a run
  if (total + v.payload > 65535) return false;
  if (a[1] != b[1] || a[8] != b[8] || (a[6] & 0x40) != (b[6] & 0x40)) return false;  // TOS TTL DF
  if (std::memcmp(a + 12, b + 12, 8) != 0) return false;                           // addresses
  const uint8_t* ta = a + 20;
  const uint8_t* tb = b + 20;
  if (std::memcmp(ta, tb, 4) != 0 || std::memcmp(ta + 8, tb + 8, 4) != 0) return false;  // ports, ACK
  if (std::memcmp(ta + 20, tb + 20, fv.doff - 20) != 0) return false;               // options
  const uint32_t prev_seq = load32(prev.data + 24);
  return load32(tb + 4) == prev_seq + static_cast<uint32_t>(pv.payload);
}

}  // namespace

bool finish_checksum(uint8_t* pkt, size_t len, uint16_t csum_start, uint16_t csum_offset) noexcept {
  if (size_t{csum_start} + csum_offset + 2 > len) return false;
  // The field holds the pseudo-header sum, so summing over it seeds it.
  uint16_t c = static_cast<uint16_t>(~core::ones_sum(pkt + csum_start, len - csum_start) & 0xffff);
  if (c == 0 && csum_offset == 6) c = 0xffff;  // UDP: 0 would mean "no checksum"
  store16(pkt + csum_start + csum_offset, c);
  return true;
}

bool tcp_checksum_ok(const uint8_t* pkt, size_t len) noexcept {
  const size_t ihl = size_t{pkt[0] & 0x0fu} * 4;
  if (len < ihl + 20) return false;
  const uint32_t l4 = static_cast<uint32_t>(len - ihl);
  return core::ones_sum(pkt + ihl, l4, pseudo_sum(pkt, core::kIpProtoTcp, l4)) == 0xffff;
}

namespace {

// Sum of the 16-bit words of p[0..len), skipping the word at offset `skip`
// (a checksum field), unfolded.
uint32_t header_words(const uint8_t* p, size_t len, size_t skip) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < len; i += 2) {
    if (i != skip) s += load16(p + i);
  }
  return s;
}

// The checksum field for an unfolded sum: folded and inverted.
uint16_t finish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

// Shared by the TCP and UDP splits: checks the TTL and the segment count,
// then per segment copies the `hdrs` header bytes into its scratch slot,
// rewrites the IP header (total length, ID + k, TTL - 1, checksum) and lets
// `l4(h, k, n, payload, payload_len)` finish the transport header.
//
// Checksums are finished from sums of the original header taken once, plus
// the fields that differ per segment: the slot was just written with
// stores of other widths, and summing it again would stall on store
// forwarding (a third of the split's time before).
template <typename L4>
TsoSplit split_segments(uint8_t* pkt, size_t len, size_t ihl, size_t hdrs, uint16_t gso_size,
                        uint8_t* hdr_scratch, size_t max_segments, iovec* iov, L4&& l4) {
  TsoSplit r;
  const size_t payload = len - hdrs;
  if (payload == 0) return r;
  const uint8_t ttl = pkt[8];
  if (ttl <= 1) {
    r.status = TsoStatus::kTtlExpired;
    return r;
  }
  const size_t n = (payload + gso_size - 1) / gso_size;
  if (n > max_segments) {
    r.status = TsoStatus::kTooManySegments;
    return r;
  }
  const uint16_t id0 = load16(pkt + 4);
  // Headers of at most 64 bytes (20 + 32 with TCP timestamps) are copied
  // with their first payload bytes as one 64-byte block; the slot has room.
  static_assert(kSegHdrSlotBytes >= 64);
  const bool common_hdrs = hdrs <= 64 && len >= 64;
  // The IP header without total length, ID and checksum, with TTL - 1.
  const uint32_t ip_base = header_words(pkt, ihl, 10) - load16(pkt + 2) - id0 - 0x100;
  for (size_t k = 0; k < n; ++k) {
    uint8_t* h = hdr_scratch + k * kSegHdrSlotBytes;
    if (common_hdrs) {
      std::memcpy(h, pkt, 64);  // a fixed size compiles to a few vector moves
    } else {
      std::memcpy(h, pkt, hdrs);
    }
    const size_t seg = std::min<size_t>(gso_size, payload - k * gso_size);
    const uint8_t* data = pkt + hdrs + k * gso_size;
    const auto total = static_cast<uint32_t>(hdrs + seg);
    const auto id = static_cast<uint16_t>(id0 + k);
    store16(h + 2, total);
    store16(h + 4, id);
    h[8] = static_cast<uint8_t>(ttl - 1);
    store16(h + 10, finish(ip_base + total + id));
    l4(h, k, n, data, seg);
    iov[2 * k] = {h, hdrs};
    iov[2 * k + 1] = {const_cast<uint8_t*>(data), seg};
  }
  r.status = TsoStatus::kOk;
  r.segments = static_cast<uint32_t>(n);
  r.seg_bytes = static_cast<uint32_t>(hdrs + std::min<size_t>(gso_size, payload));
  return r;
}

}  // namespace

TsoSplit tso_split_v4(uint8_t* pkt, size_t len, uint16_t gso_size, uint8_t* hdr_scratch,
                      size_t max_segments, iovec* iov) noexcept {
  if (len < 40 || (pkt[0] >> 4) != 4 || gso_size == 0) return {};
  const size_t ihl = size_t{pkt[0] & 0x0fu} * 4;
  if (ihl < 20 || ihl + 20 > len || pkt[9] != core::kIpProtoTcp) return {};
  const uint8_t* tcp = pkt + ihl;
  const size_t doff = (size_t{tcp[12]} >> 4) * 4;
  const size_t hdrs = ihl + doff;
  if (doff < 20 || hdrs > len || hdrs > kSegHdrSlotBytes) return {};
  const uint32_t seq0 = load32(tcp + 4);
  const uint8_t flags = tcp[13];
  // The TCP header without sequence number, flags word and checksum.
  const uint32_t tcp_base = header_words(tcp, doff, 16) - load16(tcp + 4) - load16(tcp + 6) -
                            load16(tcp + 12);
  return split_segments(pkt, len, ihl, hdrs, gso_size, hdr_scratch, max_segments, iov,
                        [&](uint8_t* h, size_t k, size_t n, const uint8_t* data, size_t seg) {
                          uint8_t* th = h + ihl;
                          const uint32_t seq = seq0 + static_cast<uint32_t>(k * gso_size);
                          store32(th + 4, seq);
                          uint8_t f = flags;
                          if (k + 1 != n) f &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
                          if (k != 0) f &= static_cast<uint8_t>(~kTcpCwr);
                          th[13] = f;
                          const uint32_t l4 = static_cast<uint32_t>(doff + seg);
                          const uint32_t hdr_sum = tcp_base + (seq >> 16) + (seq & 0xffff) +
                                                   (uint32_t{tcp[12]} << 8) + f +
                                                   pseudo_sum(pkt, core::kIpProtoTcp, l4);
                          store16(th + 16, finish(core::ones_sum(data, seg, hdr_sum)));
                        });
}

TsoSplit uso_split_v4(uint8_t* pkt, size_t len, uint16_t gso_size, uint8_t* hdr_scratch,
                      size_t max_segments, iovec* iov) noexcept {
  if (len < 28 || (pkt[0] >> 4) != 4 || gso_size == 0) return {};
  const size_t ihl = size_t{pkt[0] & 0x0fu} * 4;
  const size_t hdrs = ihl + 8;
  if (ihl < 20 || hdrs >= len || pkt[9] != core::kIpProtoUdp) return {};
  const uint32_t ports = load16(pkt + ihl) + load16(pkt + ihl + 2);
  return split_segments(pkt, len, ihl, hdrs, gso_size, hdr_scratch, max_segments, iov,
                        [&](uint8_t* h, size_t, size_t, const uint8_t* data, size_t seg) {
                          uint8_t* uh = h + ihl;
                          const uint32_t l4 = static_cast<uint32_t>(8 + seg);
                          store16(uh + 4, l4);
                          const uint32_t hdr_sum = ports + l4 + pseudo_sum(pkt, core::kIpProtoUdp, l4);
                          uint16_t c = finish(core::ones_sum(data, seg, hdr_sum));
                          if (c == 0) c = 0xffff;  // 0 would mean "no checksum"
                          store16(uh + 6, c);
                        });
}

bool udp_checksum_ok(const uint8_t* pkt, size_t len) noexcept {
  const size_t ihl = size_t{pkt[0] & 0x0fu} * 4;
  if (len < ihl + 8) return false;
  if (pkt[ihl + 6] == 0 && pkt[ihl + 7] == 0) return true;  // sender computed none
  const uint32_t l4 = static_cast<uint32_t>(len - ihl);
  return core::ones_sum(pkt + ihl, l4, pseudo_sum(pkt, core::kIpProtoUdp, l4)) == 0xffff;
}

namespace {

// UDP/IPv4 without options, not a fragment, with payload and a UDP length
// that matches the packet.
bool udp_candidate(const PacketRef& p, size_t& payload) {
  const uint8_t* ip = p.data;
  if (p.len < 29 || ip[0] != 0x45 || ip[9] != core::kIpProtoUdp) return false;
  if ((load16(ip + 6) & 0x3fff) != 0) return false;
  if (load16(ip + 24) != p.len - 20) return false;
  payload = p.len - 28;
  return true;
}

// Plans a UDP run starting at i; returns its length (1 = nothing merged).
uint32_t plan_udp_run(std::span<const PacketRef> pkts, size_t i, uint32_t max_run,
                      CoalescedRun& run, size_t& checksum_failures) {
  size_t first_payload = 0;
  if (!udp_candidate(pkts[i], first_payload)) return 1;
  const uint8_t* a = pkts[i].data;
  size_t total = pkts[i].len;
  size_t prev_payload = first_payload;
  uint32_t count = 1;
  bool first_verified = false;
  for (size_t j = i + 1; j < pkts.size() && count < max_run; ++j) {
    size_t payload = 0;
    const uint8_t* b = pkts[j].data;
    if (!udp_candidate(pkts[j], payload) || payload > first_payload ||
        prev_payload != first_payload || total + payload > 65535) {
      break;
    }
    if (a[1] != b[1] || a[8] != b[8] || (a[6] & 0x40) != (b[6] & 0x40) ||
        std::memcmp(a + 12, b + 12, 8) != 0 || std::memcmp(a + 20, b + 20, 4) != 0) {
      break;
    }
    if (!first_verified) {
      if (!pkts[i].outer_checksum_verified && !udp_checksum_ok(a, pkts[i].len)) {
        ++checksum_failures;
        break;
      }
      first_verified = true;
    }
    if (!pkts[j].outer_checksum_verified && !udp_checksum_ok(b, pkts[j].len)) {
      ++checksum_failures;
      break;
    }
    total += payload;
    prev_payload = payload;
    ++count;
  }
  if (count > 1) {
    uint8_t* ip = pkts[i].data;
    store16(ip + 2, static_cast<uint32_t>(total));
    core::ipv4_set_header_checksum(ip);
    store16(ip + 24, static_cast<uint32_t>(total - 20));
    store16(ip + 26, pseudo_sum(ip, core::kIpProtoUdp, static_cast<uint32_t>(total - 20)));
    run.vnet.flags = kVnetFlagNeedsCsum;
    run.vnet.gso_type = kVnetGsoUdpL4;
    run.vnet.hdr_len = 28;
    run.vnet.gso_size = static_cast<uint16_t>(first_payload);
    run.vnet.csum_start = 20;
    run.vnet.csum_offset = 6;
    run.count = count;
  }
  return count;
}

}  // namespace

CoalescePlan plan_tcp_coalescing(std::span<const PacketRef> pkts, uint32_t max_run,
                                 std::span<CoalescedRun> runs, bool udp) noexcept {
  CoalescePlan plan;
  size_t& out = plan.runs;
  size_t i = 0;
  while (i < pkts.size()) {
    CoalescedRun& run = runs[out++];
    run = CoalescedRun{static_cast<uint32_t>(i), 1, VnetHdr{}};
    TcpView fv;
    if (!tcp_candidate(pkts[i], fv)) {
      i += udp ? plan_udp_run(pkts, i, max_run, run, plan.checksum_failures) : 1;
      continue;
    }
    size_t total = pkts[i].len;
    TcpView pv = fv;
    size_t j = i + 1;
    bool first_verified = false;
    while (j < pkts.size() && run.count < max_run) {
      TcpView v;
      if (!tcp_candidate(pkts[j], v) || !can_follow(pkts[i], fv, pkts[j - 1], pv, pkts[j], v, total)) {
        break;
      }
      // Checked lazily: only packets that would be merged pay for it.
      if (!first_verified) {
        if (!pkts[i].outer_checksum_verified && !tcp_checksum_ok(pkts[i].data, pkts[i].len)) {
          ++plan.checksum_failures;
          break;
        }
        first_verified = true;
      }
      if (!pkts[j].outer_checksum_verified && !tcp_checksum_ok(pkts[j].data, pkts[j].len)) {
        ++plan.checksum_failures;
        break;
      }
      total += v.payload;
      pv = v;
      ++run.count;
      ++j;
    }
    if (run.count > 1) {
      uint8_t* ip = pkts[i].data;
      uint8_t* tcp = ip + 20;
      store16(ip + 2, static_cast<uint32_t>(total));
      core::ipv4_set_header_checksum(ip);
      tcp[13] = static_cast<uint8_t>(tcp[13] | (pv.flags & kTcpPsh));
      store16(tcp + 16, pseudo_sum(ip, core::kIpProtoTcp, static_cast<uint32_t>(total - 20)));
      run.vnet.flags = kVnetFlagNeedsCsum;
      run.vnet.gso_type = kVnetGsoTcpV4;
      run.vnet.hdr_len = static_cast<uint16_t>(20 + fv.doff);
      run.vnet.gso_size = static_cast<uint16_t>(fv.payload);
      run.vnet.csum_start = 20;
      run.vnet.csum_offset = 16;
    }
    i = j;
  }
  return plan;
}

}  // namespace udpring::encap
