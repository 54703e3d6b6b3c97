#include "io/dataplane/udp_to_tun.h"

#include <netinet/in.h>
#include <netinet/udp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/ipv4.h"

namespace udpring::io {
namespace {

using core::Counter;

// What a TUN write with IFF_VNET_HDR carries in front of a lone packet.
const encap::VnetHdr kZeroVnet{};

}  // namespace

size_t UdpToTun::table_bytes(const WorkerOptions& o) {
  size_t n = size_t{o.udp_buffers} * sizeof(uint16_t) + kIcmpSlots * sizeof(IcmpSend);
  if (o.tun_offload) {
    n += size_t{o.udp_buffers} * kMaxGroSegments * sizeof(single_iov_[0]) + kRunSlots * sizeof(RunSlot);
  }
  return n;
}

UdpToTun::UdpToTun(WorkerContext& ctx, BufRing& bufs, bool gro)
    : ctx_(ctx), bufs_(bufs), vnet_(ctx.opts.tun_offload), gro_(gro) {
  const WorkerOptions& o = ctx.opts;
  refs_.assign(o.udp_buffers, 0);
  if (vnet_) {
    single_iov_.resize(size_t{o.udp_buffers} * kMaxGroSegments);
    run_slots_.resize(kRunSlots);
    for (uint32_t i = 0; i < kRunSlots; ++i) run_free_.push_back(i);
  }
  // A GRO datagram can add kMaxGroSegments entries past the flush mark.
  const size_t cap = o.batch + kMaxGroSegments;
  in_.reserve(cap);
  in_bids_.reserve(cap);
  in_segs_.reserve(cap);
  verdicts_.resize(cap);
  write_pkts_.reserve(cap);
  write_bids_.reserve(cap);
  write_segs_.reserve(cap);
  runs_.resize(cap);
  icmp_sends_.resize(kIcmpSlots);
  for (uint32_t i = 0; i < kIcmpSlots; ++i) {
    IcmpSend& is = icmp_sends_[i];
    std::memset(&is, 0, sizeof is);
    is.dst.sin_family = AF_INET;
    is.msg.msg_name = &is.dst;
    is.msg.msg_namelen = sizeof is.dst;
    is.msg.msg_iov = &is.iov;
    is.msg.msg_iovlen = 1;
    icmp_free_.push_back(i);
  }
  recv_template_.msg_namelen = sizeof(sockaddr_in);
  recv_template_.msg_controllen = gro_ ? CMSG_SPACE(sizeof(int)) : 0;
}

void UdpToTun::arm_recv() {
  if (armed_ || ctx_.fatal_errno) return;
  // After ENOBUFS, arming again before a buffer came back would only fail
  // again at once, every turn: wait for a recycle, or for nothing to be held.
  if (starved_ && recycled_this_turn_ == 0 && held_ > 0) return;
  starved_ = false;
  io_uring_sqe* sqe = ctx_.ring.sqe();
  io_uring_prep_recvmsg_multishot(sqe, kUdpFile, &recv_template_, 0);
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = kUdpGroup;
  io_uring_sqe_set_data64(sqe, UserData{Op::kUdpRecv, 0}.encode());
  armed_ = true;
}

void UdpToTun::recycle(uint32_t bid) {
  bufs_.recycle(bid);
  ++recycled_this_turn_;
}

void UdpToTun::release(uint32_t bid) {
  if (--refs_[bid] == 0) {
    --held_;
    recycle(bid);
  }
}

// ---- receives ---------------------------------------------------------------

void UdpToTun::on_recv(const io_uring_cqe* cqe) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) {
    armed_ = false;
    stats().add(Counter::kMultishotRearm);
  }
  const bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
  const uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
  if (cqe->res < 0 || !has_buf) {
    if (cqe->res < 0) {
      ctx_.error(core::CompletionOp::kUdpRecv, cqe->res);
      if (cqe->res == -ENOBUFS) {
        stats().add(Counter::kNoBuffer);
        starved_ = true;
      }
    }
    if (has_buf) recycle(bid);
    return;
  }
  ctx_.turn.peer_bytes += static_cast<uint32_t>(cqe->res);
  uint8_t* buf = bufs_.buffer(bid);
  io_uring_recvmsg_out* out = io_uring_recvmsg_validate(buf, cqe->res, &recv_template_);
  if (out == nullptr) {
    stats().add(Counter::kDropBadHeaderUdp);
    recycle(bid);
    return;
  }
  const uint32_t len = io_uring_recvmsg_payload_length(out, cqe->res, &recv_template_);
  stats().add(Counter::kUdpRxPackets);
  stats().add(Counter::kUdpRxBytes, out->payloadlen);
  if (out->flags & MSG_TRUNC) {
    // Bigger than our buffer: forwarding the cut packet would corrupt it
    // (the original truncated silently).
    stats().add(Counter::kDropTruncated);
    recycle(bid);
    return;
  }
  core::Be32 src;
  if (out->namelen >= sizeof(sockaddr_in)) {
    const auto* sa = static_cast<const sockaddr_in*>(io_uring_recvmsg_name(out));
    src.raw = sa->sin_addr.s_addr;
  }
  auto* payload = static_cast<uint8_t*>(io_uring_recvmsg_payload(out, &recv_template_));
  // With UDP_GRO the kernel may hand us several back-to-back datagrams of
  // gso_size bytes (the last may be shorter); each is one inner packet.
  uint32_t seg = len;
  // A UDP_GRO cmsg means the kernel built this receive from several
  // datagrams (GRO) or took it whole from a local GSO send. GRO merges only
  // datagrams whose non-zero UDP checksum it validated, and GSO refuses a
  // socket that sends without one, so every byte here has passed a checksum
  // check (or never left the sending host) and need not be summed again
  // before coalescing. A single datagram may carry checksum 0; it keeps the
  // per-segment check.
  bool outer_verified = false;
  if (gro_) {
    for (cmsghdr* c = io_uring_recvmsg_cmsg_firsthdr(out, &recv_template_); c != nullptr;
         c = io_uring_recvmsg_cmsg_nexthdr(out, &recv_template_, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int gso_size = 0;
        std::memcpy(&gso_size, CMSG_DATA(c), sizeof gso_size);
        if (gso_size > 0 && static_cast<uint32_t>(gso_size) < len) seg = static_cast<uint32_t>(gso_size);
        outer_verified = gso_size > 0 && ctx_.opts.trust_outer_checksum;
      }
    }
  }
  split_gro(payload, len, seg, outer_verified, src, bid);
  if (in_.size() >= ctx_.opts.batch) flush();
}

// Adds the datagrams of one receive (one, or up to kMaxGroSegments of `seg`
// bytes with GRO) to the batch; each holds a reference to the buffer.
void UdpToTun::split_gro(uint8_t* payload, uint32_t len, uint32_t seg, bool outer_verified,
                         core::Be32 src, uint32_t bid) {
  uint16_t pieces = 0;
  uint32_t off = 0;
  for (; off < len && pieces < kMaxGroSegments; off += seg) {
    in_.push_back({{payload + off, std::min(seg, len - off), outer_verified}, src});
    in_bids_.push_back(static_cast<uint16_t>(bid));
    in_segs_.push_back(static_cast<uint8_t>(pieces));
    ++pieces;
  }
  // The kernel coalesces at most 64 (UDP_GRO_CNT_MAX), so this is a guard:
  // pieces beyond what the slot arrays hold are counted, not lost unseen.
  if (off < len) stats().add(Counter::kDropTruncated, (len - off + seg - 1) / seg);
  if (pieces == 0) {  // an empty datagram
    stats().add(Counter::kDropBadHeaderUdp);
    recycle(bid);
    return;
  }
  refs_[bid] = pieces;
  ++held_;
  if (pieces > 1) {
    stats().add(Counter::kUdpRxPackets, pieces - 1u);
    stats().add(Counter::kGroReceives);
  }
}

// ---- the batch --------------------------------------------------------------

// Validates the collected batch, then writes the very bytes each datagram
// was received into.
void UdpToTun::flush() {
  if (in_.empty()) return;
  const core::RouteSnapshot* routes = ctx_.routes.current();
  encap::decapsulate_batch(in_, *routes, ctx_.opts.peer_policy, verdicts_);
  for (size_t i = 0; i < in_.size(); ++i) {
    const uint32_t bid = in_bids_[i];
    switch (verdicts_[i]) {
      case encap::DecapVerdict::kWrite:
        write_pkts_.push_back(in_[i].pkt);
        write_bids_.push_back(static_cast<uint16_t>(bid));
        write_segs_.push_back(in_segs_[i]);
        continue;
      case encap::DecapVerdict::kDropBadHeader:
        stats().add(Counter::kDropBadHeaderUdp);
        break;
      case encap::DecapVerdict::kDropUnknownPeer:
        stats().add(Counter::kDropUnknownPeer);
        break;
      case encap::DecapVerdict::kDropInnerDstNotLocal:
        stats().add(Counter::kDropInnerDstNotLocal);
        break;
      case encap::DecapVerdict::kDropInnerSrcNotPeer:
        stats().add(Counter::kDropInnerSrcNotPeer);
        break;
      case encap::DecapVerdict::kDropTtl:
        stats().add(Counter::kDropTtlExpired);
        if (ctx_.opts.icmp_time_exceeded) send_time_exceeded(in_[i].pkt, *routes);
        break;
    }
    release(bid);
  }
  in_.clear();
  in_bids_.clear();
  in_segs_.clear();
  if (vnet_) {
    write_vnet();
  } else {
    write_plain();
  }
  write_pkts_.clear();
  write_bids_.clear();
  write_segs_.clear();
}

void UdpToTun::write_plain() {
  for (size_t i = 0; i < write_pkts_.size(); ++i) {
    io_uring_sqe* sqe = ctx_.ring.sqe();
    io_uring_prep_write(sqe, kTunFile, write_pkts_[i].data, write_pkts_[i].len, 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, UserData{Op::kTunWrite, write_bids_[i]}.encode());
  }
}

void UdpToTun::write_vnet() {
  const size_t n = write_pkts_.size();
  // Merging rewrites headers, so only plan runs when every possible run
  // (at most n / 2) is sure to get a slot; otherwise write them singly.
  const bool coalesce = ctx_.opts.coalesce && run_free_.size() >= n / 2 + 1;
  const uint32_t max_run = coalesce ? kMaxGroSegments : 1;
  const encap::CoalescePlan plan =
      encap::plan_coalescing(write_pkts_, max_run, runs_, ctx_.opts.coalesce_udp);
  // Bad segments are still written singly: the kernel checks and drops them.
  if (plan.checksum_failures) stats().add(Counter::kCoalesceChecksumFailures, plan.checksum_failures);
  for (size_t r = 0; r < plan.runs; ++r) {
    const encap::CoalescedRun& run = runs_[r];
    const uint32_t i = run.first;
    io_uring_sqe* sqe = ctx_.ring.sqe();
    if (run.count == 1) {
      auto& iov = single_iov_[size_t{write_bids_[i]} * kMaxGroSegments + write_segs_[i]];
      iov[0] = {const_cast<encap::VnetHdr*>(&kZeroVnet), encap::kVnetHdrBytes};
      iov[1] = {write_pkts_[i].data, write_pkts_[i].len};
      io_uring_prep_writev(sqe, kTunFile, iov.data(), 2, 0);
      io_uring_sqe_set_data64(sqe, UserData{Op::kTunWrite, write_bids_[i]}.encode());
    } else {
      const uint32_t slot = run_free_.back();
      run_free_.pop_back();
      RunSlot& rs = run_slots_[slot];
      rs.vnet = run.vnet;
      rs.count = run.count;
      rs.iov[0] = {&rs.vnet, encap::kVnetHdrBytes};
      rs.iov[1] = {write_pkts_[i].data, write_pkts_[i].len};
      const size_t hdrs = run.payload_offset();
      for (uint32_t k = 1; k < run.count; ++k) {
        const encap::PacketRef& p = write_pkts_[i + k];
        rs.iov[k + 1] = {p.data + hdrs, p.len - hdrs};
      }
      for (uint32_t k = 0; k < run.count; ++k) rs.bids[k] = write_bids_[i + k];
      io_uring_prep_writev(sqe, kTunFile, rs.iov.data(), run.count + 1, 0);
      io_uring_sqe_set_data64(sqe, UserData{Op::kTunWriteRun, slot}.encode());
      stats().add(Counter::kCoalescedWrites);
    }
    sqe->flags |= IOSQE_FIXED_FILE;
  }
}

// ---- ICMP back to a remote sender ------------------------------------------

// A packet from a peer's pod whose TTL ran out here: the Time Exceeded goes
// to that pod the way any packet for it would, in a datagram to the node
// that leases its address (under strict, the node that sent it). A source
// no lease covers gets nothing: errors are not sent off the overlay.
void UdpToTun::send_time_exceeded(const encap::PacketRef& offender, const core::RouteSnapshot& routes) {
  if (icmp_free_.empty()) return;  // best effort under a storm
  if (!encap::icmp_error_allowed(offender.data, offender.len)) return;
  const core::Be32 src = core::Ipv4View(offender.data).src();
  const core::NextHop* hop = routes.lookup(src);
  if (hop == nullptr) return;
  if (!ctx_.icmp_allowed(src)) return;
  const uint32_t slot = icmp_free_.back();
  IcmpSend& is = icmp_sends_[slot];
  const size_t len = encap::build_icmp_error(encap::IcmpError::kTimeExceeded, offender.data, offender.len,
                                             ctx_.opts.tun_addr, is.buf.data());
  if (len == 0) return;
  icmp_free_.pop_back();
  is.dst.sin_addr.s_addr = hop->addr.raw;
  is.dst.sin_port = hop->port_be;
  is.iov = {is.buf.data(), len};
  io_uring_sqe* sqe = ctx_.ring.sqe();
  io_uring_prep_sendmsg(sqe, kUdpFile, &is.msg, 0);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, UserData{Op::kIcmpSend, slot}.encode());
}

void UdpToTun::on_icmp_send(const io_uring_cqe* cqe, uint32_t slot) {
  if (cqe->res >= 0) {
    stats().add(Counter::kIcmpTimeExceededSent);
  } else {
    ctx_.error(core::CompletionOp::kUdpSend, cqe->res);
  }
  icmp_free_.push_back(slot);
}

// ---- writes -----------------------------------------------------------------

void UdpToTun::on_write(const io_uring_cqe* cqe, uint32_t bid) {
  if (cqe->res < 0) {
    ctx_.error(core::CompletionOp::kTunWrite, cqe->res);
    stats().add(Counter::kDropTunWriteError);
  } else {
    stats().add(Counter::kTunTxPackets);
    stats().add(Counter::kTunTxBytes,
                static_cast<uint64_t>(cqe->res) - (vnet_ ? encap::kVnetHdrBytes : 0));
  }
  release(bid);
}

void UdpToTun::on_write_run(const io_uring_cqe* cqe, uint32_t slot) {
  RunSlot& rs = run_slots_[slot];
  if (cqe->res < 0) {
    ctx_.error(core::CompletionOp::kTunWrite, cqe->res);
    stats().add(Counter::kDropTunWriteError, rs.count);
  } else {
    stats().add(Counter::kTunTxPackets, rs.count);
    stats().add(Counter::kTunTxBytes, static_cast<uint64_t>(cqe->res) - encap::kVnetHdrBytes);
  }
  for (uint32_t k = 0; k < rs.count; ++k) release(rs.bids[k]);
  run_free_.push_back(slot);
}

}  // namespace udpring::io
