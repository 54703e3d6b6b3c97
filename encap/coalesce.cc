#include "encap/coalesce.h"

#include <cstring>

#include "core/ipv4.h"
#include "core/ones_sum.h"
#include "encap/wire_bytes.h"

namespace udpring::encap {

using wire::kTcpAck;
using wire::kTcpPsh;
using wire::load16;
using wire::load32;
using wire::pseudo_sum;
using wire::store16;

namespace {

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

bool tcp_checksum_ok(const uint8_t* pkt, size_t len) noexcept {
  const size_t ihl = size_t{pkt[0] & 0x0fu} * 4;
  if (len < ihl + 20) return false;
  const uint32_t l4 = static_cast<uint32_t>(len - ihl);
  return core::ones_sum(pkt + ihl, l4, pseudo_sum(pkt, core::kIpProtoTcp, l4)) == 0xffff;
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

CoalescePlan plan_coalescing(std::span<const PacketRef> pkts, uint32_t max_run,
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
