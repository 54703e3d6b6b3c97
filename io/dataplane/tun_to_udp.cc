#include "io/dataplane/tun_to_udp.h"

#include <netinet/udp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/ipv4.h"

namespace udpring::io {
namespace {

using core::Counter;

// Without multishot, this many plain reads stay in flight on the TUN; more
// would each own a poll entry that every packet wakes.
constexpr int kPlainReadsInFlight = 2;

}  // namespace

size_t TunToUdp::table_bytes(const WorkerOptions& o) {
  size_t n = 3 * size_t{o.tun_buffers} * (sizeof(SendSlot) + sizeof(uint32_t)) +
             size_t{o.tun_buffers} * sizeof(uint16_t) + kIcmpSlots * kIcmpSlotBytes;
  if (o.tun_offload) {
    n += size_t{o.tun_buffers} * kMaxTsoSegments * (encap::kSegHdrSlotBytes + sizeof(SegmentSend));
  }
  return n;
}

TunToUdp::TunToUdp(WorkerContext& ctx, BufRing& bufs, int send_file, bool gso, bool zc,
                   bool multishot)
    : ctx_(ctx),
      bufs_(bufs),
      send_file_(send_file),
      vnet_(ctx.opts.tun_offload),
      gso_(gso),
      zc_(zc),
      multishot_(multishot) {
  const WorkerOptions& o = ctx.opts;
  // Every send references at least one buffer, and a buffer is in at most
  // three: a TSO read of up to 128 segments may top up the train left open
  // by the reads before it, fill one of 64, and leave one open. (With GSO
  // off its segments use segment_sends instead.) So this never runs dry,
  // except for a moment after zero copy is refused: the refused sends keep
  // their slots until their notifications while copies go out, and a copy
  // that finds no slot is counted (no_buffer, drop_send_error).
  send_slots_.resize(3 * size_t{o.tun_buffers});
  for (uint32_t i = 0; i < send_slots_.size(); ++i) {
    SendSlot& sl = send_slots_[i];
    std::memset(&sl, 0, sizeof sl);
    sl.dst.sin_family = AF_INET;
    sl.msg.msg_name = &sl.dst;
    sl.msg.msg_namelen = sizeof sl.dst;
    sl.msg.msg_iov = sl.iov.data();
    send_free_.push_back(i);
  }
  refs_.assign(o.tun_buffers, 0);
  if (vnet_) {
    tso_hdrs_ = PageArray<uint8_t>(size_t{o.tun_buffers} * kMaxTsoSegments * encap::kSegHdrSlotBytes);
    segment_sends_ = PageArray<SegmentSend>(size_t{o.tun_buffers} * kMaxTsoSegments);
  }
  icmp_bufs_.resize(kIcmpSlots);
  for (auto& b : icmp_bufs_) b.fill(0);
  for (uint32_t i = 0; i < kIcmpSlots; ++i) icmp_free_.push_back(i);
  icmp_kind_.resize(kIcmpSlots);
  pkts_.reserve(o.batch);
  bids_.reserve(o.batch);
  results_.resize(o.batch);
  trains_.resize(o.batch);
}

void TunToUdp::arm_reads() {
  const int want = multishot_ ? 1 : kPlainReadsInFlight;
  while (reads_armed_ < want) {
    io_uring_sqe* sqe = ctx_.ring.sqe();
    if (multishot_) {
      io_uring_prep_rw(kOpReadMultishot, sqe, kTunFile, nullptr, 0, 0);
    } else {
      io_uring_prep_read(sqe, kTunFile, nullptr, bufs_.buf_bytes(), 0);
    }
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = kTunGroup;
    io_uring_sqe_set_data64(sqe, UserData{Op::kTunRead, 0}.encode());
    ++reads_armed_;
  }
}

void TunToUdp::rearm() {
  if (ctx_.fatal_errno) return;  // the loop stops: arming again would spin
  // After ENOBUFS, re-arming before any buffer came back would only fail
  // again at once, every turn (plain reads too, when sends hold every
  // buffer): wait for a recycle, or for nothing to be in flight.
  if (starved_ && recycled_this_turn_ == 0 && in_flight_ > 0) return;
  if (reads_armed_ == 0 || !multishot_) {
    starved_ = false;
    arm_reads();
  }
}

void TunToUdp::recycle(uint32_t bid) {
  bufs_.recycle(bid);
  ++recycled_this_turn_;
}

void TunToUdp::release(uint32_t bid) {
  --in_flight_;
  if (--refs_[bid] == 0) recycle(bid);
}

// ---- reads ------------------------------------------------------------------

void TunToUdp::on_read(const io_uring_cqe* cqe) {
  const bool more = multishot_ && (cqe->flags & IORING_CQE_F_MORE);
  if (!more) {
    --reads_armed_;
    if (multishot_) stats().add(Counter::kMultishotRearm);
  }
  const bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
  const uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
  if (cqe->res <= 0) {
    if (cqe->res < 0 &&
        ctx_.error(core::CompletionOp::kTunRead, cqe->res) == core::ErrorClass::kTransient) {
      starved_ = true;
      if (cqe->res == -ENOBUFS) stats().add(Counter::kNoBuffer);
    }
    if (has_buf) recycle(bid);
    return;
  }
  ctx_.turn.tun_bytes += static_cast<uint32_t>(cqe->res);
  uint8_t* buf = bufs_.buffer(bid);
  uint32_t len = static_cast<uint32_t>(cqe->res);
  if (vnet_) {
    if (len < encap::kVnetHdrBytes) {
      stats().add(Counter::kDropBadHeaderTun);
      recycle(bid);
      return;
    }
    encap::VnetHdr h;
    std::memcpy(&h, buf, sizeof h);
    buf += encap::kVnetHdrBytes;
    len -= encap::kVnetHdrBytes;
    const uint8_t type = h.gso_type & static_cast<uint8_t>(~encap::kVnetGsoEcn);
    if (type == encap::kVnetGsoTcpV4 || (type == encap::kVnetGsoUdpL4 && ctx_.opts.uso)) {
      flush_batch();  // keep packet order: earlier packets leave first
      send_tso(bid, buf, len, h.gso_size, type == encap::kVnetGsoUdpL4);
      return;
    }
    if (type != encap::kVnetGsoNone ||
        ((h.flags & encap::kVnetFlagNeedsCsum) &&
         !encap::finish_checksum(buf, len, h.csum_start, h.csum_offset))) {
      stats().add(Counter::kTunRxPackets);
      stats().add(Counter::kDropBadHeaderTun);
      recycle(bid);
      return;
    }
  }
  stats().add(Counter::kTunRxPackets);
  stats().add(Counter::kTunRxBytes, len);
  pkts_.push_back({buf, len});
  bids_.push_back(static_cast<uint16_t>(bid));
  if (pkts_.size() == ctx_.opts.batch) flush_batch();
}

// ---- a batch of lone packets --------------------------------------------------

void TunToUdp::flush() {
  flush_batch();
  submit_train();
}

// Classifies the collected batch, then sends straight from the buffers the
// TUN reads filled: each train (encap/gso_train.h) is one sendmsg with one
// iovec per packet. A TSO train left open stays open while no lone packet
// comes between super-packets.
void TunToUdp::flush_batch() {
  if (pkts_.empty()) return;
  submit_train();  // read before these packets, so it leaves first
  const core::RouteSnapshot* routes = ctx_.routes.current();
  const size_t n = pkts_.size();
  encap::encapsulate_batch(pkts_, *routes, results_);
  for (size_t i = 0; i < n; ++i) drop(i);
  const size_t ntrains =
      encap::group_gso_trains(pkts_, results_, gso_ ? encap::kMaxGsoSegments : 1, trains_);
  for (size_t t = 0; t < ntrains; ++t) {
    const encap::GsoTrain& tr = trains_[t];
    SendSlot* sl = take_send_slot();
    if (sl == nullptr) {
      stats().add(Counter::kNoBuffer, tr.count);
      stats().add(Counter::kDropSendError, tr.count);
      for (uint32_t k = 0; k < tr.count; ++k) recycle(bids_[tr.first + k]);
      continue;
    }
    const core::NextHop& hop = *results_[tr.first].hop;
    sl->dst.sin_addr.s_addr = hop.addr.raw;  // copied: the snapshot may go
    sl->dst.sin_port = hop.port_be;
    for (uint32_t k = 0; k < tr.count; ++k) {
      const encap::PacketRef& p = pkts_[tr.first + k];
      sl->iov[k] = {p.data, p.len};
      sl->bids[k] = bids_[tr.first + k];
      ++refs_[sl->bids[k]];
    }
    sl->nbids = tr.count;
    submit_send(*sl, tr.count, tr.count, tr.seg_bytes);
  }
  pkts_.clear();
  bids_.clear();
}

// Counts and recycles packet i of the batch unless it is to be sent.
void TunToUdp::drop(size_t i) {
  switch (results_[i].verdict) {
    case encap::EncapVerdict::kSend:
      return;
    case encap::EncapVerdict::kDropBadHeader:
      stats().add(Counter::kDropBadHeaderTun);
      break;
    case encap::EncapVerdict::kDropNoRoute:
      stats().add(Counter::kDropNoRoute);
      send_icmp(encap::IcmpError::kNetUnreachable, pkts_[i]);
      break;
    case encap::EncapVerdict::kDropTtl:
      stats().add(Counter::kDropTtlExpired);
      if (ctx_.opts.icmp_time_exceeded) send_icmp(encap::IcmpError::kTimeExceeded, pkts_[i]);
      break;
    case encap::EncapVerdict::kDropTooBig:
      stats().add(Counter::kDropTooBig);
      send_icmp(encap::IcmpError::kFragmentationNeeded, pkts_[i], results_[i].hop->max_inner);
      break;
  }
  recycle(bids_[i]);
}

// The error goes back into the TUN, to the local pod that sent `offender`.
void TunToUdp::send_icmp(encap::IcmpError kind, const encap::PacketRef& offender,
                         uint16_t next_hop_mtu) {
  if (icmp_free_.empty()) return;  // replies are best effort under a storm
  if (!encap::icmp_error_allowed(offender.data, offender.len)) return;
  if (!ctx_.icmp_allowed(core::Ipv4View(offender.data).src())) return;
  const uint32_t slot = icmp_free_.back();
  uint8_t* out = icmp_bufs_[slot].data() + encap::kVnetHdrBytes;
  const size_t len =
      encap::build_icmp_error(kind, offender.data, offender.len, ctx_.opts.tun_addr, out, next_hop_mtu);
  if (len == 0) return;
  icmp_free_.pop_back();
  icmp_kind_[slot] = kind;
  io_uring_sqe* sqe = ctx_.ring.sqe();
  if (vnet_) {
    io_uring_prep_write(sqe, kTunFile, icmp_bufs_[slot].data(),
                        static_cast<unsigned>(len + encap::kVnetHdrBytes), 0);
  } else {
    io_uring_prep_write(sqe, kTunFile, out, static_cast<unsigned>(len), 0);
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, UserData{Op::kIcmpWrite, slot}.encode());
}

void TunToUdp::on_icmp_write(const io_uring_cqe* cqe, uint32_t slot) {
  if (cqe->res >= 0) {
    stats().add(icmp_kind_[slot] == encap::IcmpError::kTimeExceeded ? Counter::kIcmpTimeExceededSent
                                                                     : Counter::kIcmpUnreachSent);
  } else {
    ctx_.error(core::CompletionOp::kIcmpWrite, cqe->res);
  }
  icmp_free_.push_back(slot);
}

// ---- TSO super-packets ----------------------------------------------------------

// One route lookup, then the segments leave as one GSO train of
// [rebuilt header][payload slice] iovec pairs.
void TunToUdp::send_tso(uint32_t bid, uint8_t* pkt, uint32_t len, uint16_t gso_size, bool udp) {
  const core::RouteSnapshot* routes = ctx_.routes.current();
  stats().add(Counter::kTunRxBytes, len);
  if (len < core::kIpv4MinHeaderBytes || (pkt[0] >> 4) != 4) {
    stats().add(Counter::kTunRxPackets);
    stats().add(Counter::kDropBadHeaderTun);
    recycle(bid);
    return;
  }
  const core::NextHop* hop = routes->lookup(core::Ipv4View(pkt).dst());
  uint8_t* hdrs = tso_hdrs_.data() + size_t{bid} * kMaxTsoSegments * encap::kSegHdrSlotBytes;
  const encap::TsoSplit split =
      !hop  ? encap::TsoSplit{}
      : udp ? encap::uso_split_v4(pkt, len, gso_size, hdrs, kMaxTsoSegments, tso_iov_.data())
            : encap::tso_split_v4(pkt, len, gso_size, hdrs, kMaxTsoSegments, tso_iov_.data());
  if (!hop || split.status != encap::TsoStatus::kOk) {
    stats().add(Counter::kTunRxPackets);
    if (!hop) {
      stats().add(Counter::kDropNoRoute);
      send_icmp(encap::IcmpError::kNetUnreachable, {pkt, len});
    } else if (split.status == encap::TsoStatus::kTtlExpired) {
      stats().add(Counter::kDropTtlExpired);
      if (ctx_.opts.icmp_time_exceeded) send_icmp(encap::IcmpError::kTimeExceeded, {pkt, len});
    } else {
      stats().add(Counter::kDropBadHeaderTun);
    }
    recycle(bid);
    return;
  }
  // Every segment has the super-packet's DF flag: the whole read is refused
  // when a full segment does not fit the path, and the pod's TCP lowers its
  // MSS from the Fragmentation Needed.
  const uint32_t largest = split.segments > 1 ? split.seg_bytes : len;
  if (encap::too_big_for(*hop, largest, core::Ipv4View(pkt).dont_fragment())) {
    stats().add(Counter::kTunRxPackets);
    stats().add(Counter::kDropTooBig);
    send_icmp(encap::IcmpError::kFragmentationNeeded, {pkt, len}, hop->max_inner);
    recycle(bid);
    return;
  }
  stats().add(Counter::kTunRxPackets, split.segments);
  stats().add(Counter::kTsoReads);
  ++refs_[bid];  // held while the segments are being queued
  if (!gso_) {
    for (uint32_t k = 0; k < split.segments; ++k) send_segment(bid, k, *hop);
    if (--refs_[bid] == 0) recycle(bid);
    return;
  }
  for (uint32_t k = 0; k < split.segments; ++k) {
    const iovec& hdr = tso_iov_[2 * k];
    const iovec& body = tso_iov_[2 * k + 1];
    const auto bytes = static_cast<uint32_t>(hdr.iov_len + body.iov_len);
    if (train_ != nullptr && !open_.accepts(*hop, split.seg_bytes, bytes)) submit_train();
    if (train_ == nullptr) {
      train_ = take_send_slot();
      if (train_ == nullptr) {
        stats().add(Counter::kNoBuffer);
        stats().add(Counter::kDropSendError);
        continue;
      }
      train_->dst.sin_addr.s_addr = hop->addr.raw;
      train_->dst.sin_port = hop->port_be;
      train_->datagrams = 0;
      open_ = encap::OpenTrain{*hop, split.seg_bytes, 0, 0};
    }
    SendSlot& t = *train_;
    t.iov[2 * t.datagrams] = hdr;
    t.iov[2 * t.datagrams + 1] = body;
    t.bids[t.datagrams++] = static_cast<uint16_t>(bid);
    ++refs_[bid];
    if (open_.add(bytes)) submit_train();
  }
  if (--refs_[bid] == 0) recycle(bid);
}

// Segment k of TUN buffer bid, alone, from its SegmentSend (GSO off).
void TunToUdp::send_segment(uint32_t bid, uint32_t k, const core::NextHop& hop) {
  const uint32_t index = bid * kMaxTsoSegments + k;
  SegmentSend& ss = segment_sends_[index];
  // Filled here, not at start, so that its page stays untouched with GSO on.
  ss.dst.sin_family = AF_INET;
  ss.msg.msg_name = &ss.dst;
  ss.msg.msg_namelen = sizeof ss.dst;
  ss.msg.msg_iov = ss.iov.data();
  ss.msg.msg_iovlen = 2;
  ss.dst.sin_addr.s_addr = hop.addr.raw;
  ss.dst.sin_port = hop.port_be;
  ss.iov[0] = tso_iov_[2 * k];
  ss.iov[1] = tso_iov_[2 * k + 1];
  ++refs_[bid];
  ++in_flight_;
  io_uring_sqe* sqe = ctx_.ring.sqe();
  io_uring_prep_sendmsg(sqe, send_file_, &ss.msg, 0);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, UserData{Op::kUdpSendSegment, index}.encode());
}

void TunToUdp::on_send_segment(const io_uring_cqe* cqe, uint32_t index) {
  count_send(cqe->res, 1);
  release(index / kMaxTsoSegments);
}

// Sends the train send_tso has been filling. It stays open while TSO reads
// to the same peer with the same segment size follow each other in a loop
// turn (encap::OpenTrain); without that, the last segments of each 64 KiB
// super-packet went out as a send of their own, doubling the sends.
void TunToUdp::submit_train() {
  if (train_ == nullptr) return;
  SendSlot& t = *train_;
  train_ = nullptr;
  t.nbids = t.datagrams;  // one buffer reference per datagram
  submit_send(t, t.datagrams, 2 * t.datagrams, open_.seg_bytes);
}

// ---- sends ----------------------------------------------------------------------

// Sized so that it cannot run dry (see the constructor); a null return is a
// bug guard, counted as no_buffer by the callers.
TunToUdp::SendSlot* TunToUdp::take_send_slot() {
  if (send_free_.empty()) return nullptr;
  const uint32_t i = send_free_.back();
  send_free_.pop_back();
  return &send_slots_[i];
}

// Sends `datagrams` datagrams made of the `niov` iovecs already in `sl`;
// with more than one they leave as a UDP GSO sendmsg cut every `seg` bytes.
void TunToUdp::submit_send(SendSlot& sl, uint32_t datagrams, uint32_t niov, uint32_t seg) {
  sl.datagrams = datagrams;
  sl.msg.msg_iovlen = niov;
  if (datagrams > 1) {
    sl.msg.msg_control = sl.cmsg;
    sl.msg.msg_controllen = sizeof sl.cmsg;
    cmsghdr* c = CMSG_FIRSTHDR(&sl.msg);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    const auto gso_size = static_cast<uint16_t>(seg);
    std::memcpy(CMSG_DATA(c), &gso_size, sizeof gso_size);
  } else {
    sl.msg.msg_control = nullptr;
    sl.msg.msg_controllen = 0;
  }
  in_flight_ += sl.nbids;
  io_uring_sqe* sqe = ctx_.ring.sqe();
  // Zero copy only pays for large sends (kernel msg_zerocopy.rst: ~10 KB).
  sl.zc = zc_ && datagrams > 1;
  if (sl.zc) {
    io_uring_prep_sendmsg_zc(sqe, send_file_, &sl.msg, 0);
  } else {
    io_uring_prep_sendmsg(sqe, send_file_, &sl.msg, 0);
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(
      sqe, UserData{Op::kUdpSend, static_cast<uint32_t>(&sl - send_slots_.data())}.encode());
}

void TunToUdp::on_send(const io_uring_cqe* cqe, uint32_t slot) {
  SendSlot& sl = send_slots_[slot];
  if (cqe->flags & IORING_CQE_F_NOTIF) {  // SENDMSG_ZC: the kernel let go of the pages
    finish_send(slot);
    return;
  }
  // With zero copy a notification CQE follows when F_MORE is set.
  const bool notif_follows = sl.zc && (cqe->flags & IORING_CQE_F_MORE);
  if (cqe->res == -EIO && sl.datagrams > 1) {
    // EIO: the egress device cannot checksum-offload a GSO send. Turn GSO
    // off for good and resend the datagrams one by one (wireguard-go does
    // the same). The new sends take their own buffer references.
    gso_ = false;
    stats().add(Counter::kGsoFallback);
    resend_singly(sl);
  } else if (cqe->res == -EMSGSIZE && sl.zc) {
    // A zero-copy send must fit MAX_SKB_FRAGS pages; a GSO train of many
    // iovecs does not. Stop using zero copy on this worker and send the
    // train again, copied.
    zc_ = false;
    stats().add(Counter::kSendZcFallback);
    resend_copied(sl);
  } else {
    count_send(cqe->res, sl.datagrams);
    if (cqe->res >= 0 && sl.datagrams > 1) stats().add(Counter::kGsoSends);
  }
  if (!notif_follows) finish_send(slot);
}

// The counters of a finished send of `datagrams` datagrams.
void TunToUdp::count_send(int res, uint32_t datagrams) {
  if (res < 0) {
    ctx_.error(core::CompletionOp::kUdpSend, res);
    stats().add(Counter::kDropSendError, datagrams);
    stats().set(Counter::kLastSendErrno, static_cast<uint64_t>(-res));
  } else {
    stats().add(Counter::kUdpTxPackets, datagrams);
    stats().add(Counter::kUdpTxBytes, static_cast<uint64_t>(res));
  }
}

void TunToUdp::finish_send(uint32_t slot) {
  SendSlot& sl = send_slots_[slot];
  for (uint32_t k = 0; k < sl.nbids; ++k) release(sl.bids[k]);
  send_free_.push_back(slot);
}

void TunToUdp::resend_singly(const SendSlot& train) {
  const uint32_t per = static_cast<uint32_t>(train.msg.msg_iovlen) / train.datagrams;  // 1 or 2
  for (uint32_t d = 0; d < train.datagrams; ++d) {
    SendSlot* onep = take_send_slot();
    if (onep == nullptr) {
      stats().add(Counter::kNoBuffer);
      stats().add(Counter::kDropSendError);
      continue;
    }
    SendSlot& one = *onep;
    one.dst = train.dst;
    std::copy_n(train.iov.begin() + per * d, per, one.iov.begin());
    one.bids[0] = train.bids[train.nbids == train.datagrams ? d : 0];
    one.nbids = 1;
    ++refs_[one.bids[0]];
    submit_send(one, 1, per, 0);
  }
}

// The same train through a copying sendmsg; it takes its own buffer
// references, as the refused send lets go of the train's.
void TunToUdp::resend_copied(const SendSlot& train) {
  SendSlot* cp = take_send_slot();
  if (cp == nullptr) {
    stats().add(Counter::kNoBuffer);
    stats().add(Counter::kDropSendError, train.datagrams);
    return;
  }
  uint16_t seg = 0;
  if (train.datagrams > 1) std::memcpy(&seg, CMSG_DATA(CMSG_FIRSTHDR(&train.msg)), sizeof seg);
  cp->dst = train.dst;
  std::copy_n(train.iov.begin(), train.msg.msg_iovlen, cp->iov.begin());
  std::copy_n(train.bids.begin(), train.nbids, cp->bids.begin());
  cp->nbids = train.nbids;
  for (uint32_t k = 0; k < cp->nbids; ++k) ++refs_[cp->bids[k]];
  submit_send(*cp, train.datagrams, static_cast<uint32_t>(train.msg.msg_iovlen), seg);
}

}  // namespace udpring::io
