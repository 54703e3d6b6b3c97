#include "encap/gso_split.h"

#include <algorithm>
#include <cstring>

#include "core/ipv4.h"
#include "core/ones_sum.h"
#include "encap/wire_bytes.h"

namespace udpring::encap {

using wire::kTcpCwr;
using wire::kTcpFin;
using wire::kTcpPsh;
using wire::load16;
using wire::load32;
using wire::pseudo_sum;
using wire::store16;
using wire::store32;

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

}  // namespace udpring::encap
