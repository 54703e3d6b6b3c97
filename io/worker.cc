#include "io/worker.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <cerrno>
#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "encap/icmp.h"
#include "encap/udp_decap.h"
#include "encap/udp_encap.h"
#include "io/ring.h"

namespace udpring::io {
namespace {

// IORING_OP_READ_MULTISHOT (Linux 6.7). liburing 2.3's headers predate it.
constexpr uint8_t kOpReadMultishot = 49;
// Fixed-file slots registered with the ring.
constexpr int kTunFile = 0;
constexpr int kUdpFile = 1;
// Without multishot, this many plain reads stay in flight on the TUN; more
// would each own a poll entry that every packet wakes (IO_URING_NOTES §1.3).
constexpr int kPlainReadsInFlight = 2;
constexpr uint16_t kTunGroup = 0;
constexpr uint16_t kUdpGroup = 1;
constexpr uint32_t kIcmpSlots = 64;
// UDP GSO limits: UDP_MAX_SEGMENTS was 64 before Linux 6.9 (then 128), and an
// IPv4 datagram carries at most 65535 - 20 - 8 bytes.
constexpr uint32_t kMaxGsoSegments = 64;
constexpr uint32_t kMaxGsoBytes = 65507;
// A GRO'd datagram holds at most this many segments (UDP_GRO_CNT_MAX).
constexpr uint32_t kMaxGroSegments = 64;
// Idle wake-up period: bounds how long a stop request waits.
constexpr long long kWaitNanos = 200'000'000;

using core::Counter;

}  // namespace

// Everything the loop touches, allocated once at setup. Member order matters:
// the ring is declared last, so it is torn down first, while the arenas that
// in-flight requests point into are still mapped.
struct Worker::Impl {
  Worker& w;
  std::optional<BufRing> tun_bufs;
  std::optional<BufRing> udp_bufs;

  // One send context per TUN buffer: a train of packets to one peer is sent
  // from the slot of its first buffer, so the first buffer's id indexes the
  // msghdr that carries it. No pool, no locking.
  struct SendSlot {
    msghdr msg;
    sockaddr_in dst;
    uint32_t count;  // packets (= iovecs) in this send
    alignas(cmsghdr) uint8_t cmsg[CMSG_SPACE(sizeof(uint16_t))];
    std::array<iovec, kMaxGsoSegments> iov;
    std::array<uint16_t, kMaxGsoSegments> bids;
  };
  std::vector<SendSlot> send_slots;

  // ICMP replies are new bytes (not forwarded payload) and need a home while
  // their TUN write is in flight.
  std::vector<std::array<uint8_t, encap::kIcmpUnreachMaxBytes>> icmp_bufs;
  std::vector<uint32_t> icmp_free;

  // Batches collected from one loop turn's completions.
  std::vector<encap::PacketRef> tun_pkts;
  std::vector<uint16_t> tun_bids;
  std::vector<encap::EncapResult> tun_results;
  std::vector<encap::DecapInput> udp_in;
  std::vector<uint16_t> udp_bids;
  std::vector<encap::DecapVerdict> udp_verdicts;
  // Segments of each UDP buffer still being written to the TUN; the buffer
  // goes back to the kernel when its count drops to zero.
  std::vector<uint16_t> udp_refs;
  bool gso = false;       // UDP_SEGMENT sends; cleared for good on EIO
  bool gro = false;       // UDP_GRO enabled on the socket

  msghdr recv_template{};  // must outlive the armed multishot recvmsg
  bool multishot_read = false;
  int tun_reads_armed = 0;
  bool udp_recv_armed = false;
  uint32_t tun_recycled_this_turn = 0;
  uint32_t tun_in_flight = 0;
  bool logged_send_error = false;

  std::unique_ptr<Ring> ring;  // last: destroyed first

  explicit Impl(Worker& worker) : w(worker) {}

  core::WorkerStats& stats() { return w.stats_; }

  void setup() {
    const WorkerOptions& o = w.opts_;
    ring = std::make_unique<Ring>(o.sq_entries, 4 * (o.tun_buffers + o.udp_buffers));
    const int fds[2] = {w.tun_.get(), w.udp_.get()};
    ring->register_files(fds, 2);
    tun_bufs.emplace(ring->get(), kTunGroup, o.tun_buffers, o.tun_buf_bytes);
    udp_bufs.emplace(ring->get(), kUdpGroup, o.udp_buffers, o.udp_buf_bytes);

    send_slots.resize(o.tun_buffers);
    for (SendSlot& sl : send_slots) {
      std::memset(&sl, 0, sizeof sl);
      sl.dst.sin_family = AF_INET;
      sl.msg.msg_name = &sl.dst;
      sl.msg.msg_namelen = sizeof sl.dst;
      sl.msg.msg_iov = sl.iov.data();
    }
    udp_refs.assign(o.udp_buffers, 0);
    gso = o.gso;
    if (o.gro) {
      const int one = 1;
      gro = setsockopt(w.udp_.get(), SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
    }
    icmp_bufs.resize(kIcmpSlots);
    for (uint32_t i = 0; i < kIcmpSlots; ++i) icmp_free.push_back(i);

    tun_pkts.reserve(o.batch);
    tun_bids.reserve(o.batch);
    tun_results.resize(o.batch);
    // A GRO datagram can add kMaxGroSegments entries past the flush mark.
    udp_in.reserve(o.batch + kMaxGroSegments);
    udp_bids.reserve(o.batch + kMaxGroSegments);
    udp_verdicts.resize(o.batch + kMaxGroSegments);

    recv_template.msg_namelen = sizeof(sockaddr_in);
    recv_template.msg_controllen = gro ? CMSG_SPACE(sizeof(int)) : 0;

    multishot_read = o.multishot_read && probe_read_multishot();
    w.features_ = describe(ring->features()) +
                  (multishot_read ? ", TUN READ_MULTISHOT" : ", TUN plain reads") +
                  ", UDP RECVMSG multishot" + (gso ? ", UDP GSO" : "") +
                  (gro ? ", UDP GRO" : "");
  }

  bool probe_read_multishot() {
    io_uring_probe* probe = io_uring_get_probe_ring(ring->get());
    if (!probe) return false;
    const bool ok = io_uring_opcode_supported(probe, kOpReadMultishot);
    io_uring_free_probe(probe);
    return ok;
  }

  void arm_tun_reads() {
    const int want = multishot_read ? 1 : kPlainReadsInFlight;
    while (tun_reads_armed < want) {
      io_uring_sqe* sqe = ring->sqe();
      if (multishot_read) {
        io_uring_prep_rw(kOpReadMultishot, sqe, kTunFile, nullptr, 0, 0);
      } else {
        io_uring_prep_read(sqe, kTunFile, nullptr, tun_bufs->buf_bytes(), 0);
      }
      sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
      sqe->buf_group = kTunGroup;
      io_uring_sqe_set_data64(sqe, UserData{Op::kTunRead, 0}.encode());
      ++tun_reads_armed;
    }
  }

  void arm_udp_recv() {
    if (udp_recv_armed) return;
    io_uring_sqe* sqe = ring->sqe();
    io_uring_prep_recvmsg_multishot(sqe, kUdpFile, &recv_template, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = kUdpGroup;
    io_uring_sqe_set_data64(sqe, UserData{Op::kUdpRecv, 0}.encode());
    udp_recv_armed = true;
  }

  void recycle_tun(uint32_t bid) {
    tun_bufs->recycle(bid);
    ++tun_recycled_this_turn;
  }

  void on_tun_read(const io_uring_cqe* cqe) {
    const bool more = multishot_read && (cqe->flags & IORING_CQE_F_MORE);
    if (!more) {
      --tun_reads_armed;
      if (multishot_read) stats().add(Counter::kMultishotRearm);
    }
    const bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
    const uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (cqe->res <= 0) {
      if (cqe->res == -ENOBUFS) stats().add(Counter::kNoBuffer);
      if (has_buf) recycle_tun(bid);
      return;
    }
    stats().add(Counter::kTunRxPackets);
    stats().add(Counter::kTunRxBytes, static_cast<uint64_t>(cqe->res));
    tun_pkts.push_back({tun_bufs->buffer(bid), static_cast<uint32_t>(cqe->res)});
    tun_bids.push_back(static_cast<uint16_t>(bid));
    if (tun_pkts.size() == w.opts_.batch) flush_tun();
  }

  void on_udp_recv(const io_uring_cqe* cqe) {
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
      udp_recv_armed = false;
      stats().add(Counter::kMultishotRearm);
    }
    const bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
    const uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (cqe->res < 0 || !has_buf) {
      if (cqe->res == -ENOBUFS) stats().add(Counter::kNoBuffer);
      if (has_buf) udp_bufs->recycle(bid);
      return;
    }
    uint8_t* buf = udp_bufs->buffer(bid);
    io_uring_recvmsg_out* out = io_uring_recvmsg_validate(buf, cqe->res, &recv_template);
    if (out == nullptr) {
      stats().add(Counter::kDropBadHeaderUdp);
      udp_bufs->recycle(bid);
      return;
    }
    const uint32_t len = io_uring_recvmsg_payload_length(out, cqe->res, &recv_template);
    stats().add(Counter::kUdpRxPackets);
    stats().add(Counter::kUdpRxBytes, out->payloadlen);
    if (out->flags & MSG_TRUNC) {
      // Bigger than our buffer: forwarding the cut packet would corrupt it
      // (the original truncated silently).
      stats().add(Counter::kDropTruncated);
      udp_bufs->recycle(bid);
      return;
    }
    core::Be32 src;
    if (out->namelen >= sizeof(sockaddr_in)) {
      const auto* sa = static_cast<const sockaddr_in*>(io_uring_recvmsg_name(out));
      src.raw = sa->sin_addr.s_addr;
    }
    auto* payload = static_cast<uint8_t*>(io_uring_recvmsg_payload(out, &recv_template));
    // With UDP_GRO the kernel may hand us several back-to-back datagrams of
    // gso_size bytes (the last may be shorter); each is one inner packet.
    uint32_t seg = len;
    if (gro) {
      for (cmsghdr* c = io_uring_recvmsg_cmsg_firsthdr(out, &recv_template); c != nullptr;
           c = io_uring_recvmsg_cmsg_nexthdr(out, &recv_template, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
          int gso_size = 0;
          std::memcpy(&gso_size, CMSG_DATA(c), sizeof gso_size);
          if (gso_size > 0 && static_cast<uint32_t>(gso_size) < len) seg = static_cast<uint32_t>(gso_size);
        }
      }
    }
    uint16_t pieces = 0;
    for (uint32_t off = 0; off < len; off += seg) {
      udp_in.push_back({{payload + off, std::min(seg, len - off)}, src});
      udp_bids.push_back(static_cast<uint16_t>(bid));
      ++pieces;
    }
    udp_refs[bid] = pieces;
    if (pieces > 1) {
      stats().add(Counter::kUdpRxPackets, pieces - 1u);
      stats().add(Counter::kGroReceives);
    }
    if (udp_in.size() >= w.opts_.batch) flush_udp();
  }

  void release_udp(uint32_t bid) {
    if (--udp_refs[bid] == 0) udp_bufs->recycle(bid);
  }

  void on_udp_send(const io_uring_cqe* cqe, uint32_t head) {
    SendSlot& sl = send_slots[head];
    const uint32_t count = sl.count;
    tun_in_flight -= count;
    if (cqe->res == -EIO && count > 1) {
      // EIO: the egress device cannot checksum-offload a GSO send. Turn GSO
      // off for good and resend the train one packet at a time
      // (wireguard-go does the same).
      gso = false;
      stats().add(Counter::kGsoFallback);
      std::array<uint16_t, kMaxGsoSegments> bids;
      std::array<iovec, kMaxGsoSegments> iov;
      std::copy_n(sl.bids.begin(), count, bids.begin());
      std::copy_n(sl.iov.begin(), count, iov.begin());
      const sockaddr_in dst = sl.dst;
      for (uint32_t k = 0; k < count; ++k) {
        SendSlot& one = send_slots[bids[k]];
        one.iov[0] = iov[k];
        one.bids[0] = bids[k];
        one.dst = dst;
        submit_send(one, bids[k], 1, 0);
      }
      return;
    }
    if (cqe->res < 0) {
      stats().add(Counter::kDropSendError, count);
    } else {
      stats().add(Counter::kUdpTxPackets, count);
      stats().add(Counter::kUdpTxBytes, static_cast<uint64_t>(cqe->res));
      if (count > 1) stats().add(Counter::kGsoSends);
    }
    for (uint32_t k = 0; k < count; ++k) recycle_tun(sl.bids[k]);
  }

  // Sends `count` packets already placed in `sl.iov`; with count > 1 they
  // leave as one UDP GSO sendmsg cut into `seg`-byte datagrams by the kernel.
  void submit_send(SendSlot& sl, uint32_t head, uint32_t count, uint32_t seg) {
    sl.count = count;
    sl.msg.msg_iovlen = count;
    if (count > 1) {
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
    io_uring_sqe* sqe = ring->sqe();
    io_uring_prep_sendmsg(sqe, kUdpFile, &sl.msg, 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, UserData{Op::kUdpSend, head}.encode());
    tun_in_flight += count;
  }

  void on_tun_write(const io_uring_cqe* cqe, uint32_t bid) {
    if (cqe->res < 0) {
      stats().add(Counter::kDropTunWriteError);
    } else {
      stats().add(Counter::kTunTxPackets);
      stats().add(Counter::kTunTxBytes, static_cast<uint64_t>(cqe->res));
    }
    release_udp(bid);
  }

  void on_icmp_write(const io_uring_cqe* cqe, uint32_t slot) {
    if (cqe->res >= 0) stats().add(Counter::kIcmpUnreachSent);
    icmp_free.push_back(slot);
  }

  void send_icmp_unreachable(const encap::PacketRef& offender) {
    if (icmp_free.empty()) return;  // replies are best effort under a storm
    const uint32_t slot = icmp_free.back();
    const size_t len = encap::build_net_unreachable(offender.data, offender.len, w.opts_.tun_addr,
                                                    icmp_bufs[slot].data());
    if (len == 0) return;
    icmp_free.pop_back();
    io_uring_sqe* sqe = ring->sqe();
    io_uring_prep_write(sqe, kTunFile, icmp_bufs[slot].data(), static_cast<unsigned>(len), 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, UserData{Op::kIcmpWrite, slot}.encode());
  }

  // TUN -> UDP for the collected batch: classify, then send straight from
  // the buffers the TUN reads filled. Consecutive packets to the same peer
  // form a train (all but the last of one size) sent as one UDP GSO sendmsg
  // with one iovec per packet; on the wire each is still its own datagram.
  void flush_tun() {
    if (tun_pkts.empty()) return;
    const core::RouteSnapshot* routes = w.routes_.current();
    const size_t n = tun_pkts.size();
    encap::encapsulate_batch(tun_pkts, *routes, tun_results);
    size_t i = 0;
    while (i < n) {
      const uint32_t bid = tun_bids[i];
      const encap::EncapResult& r = tun_results[i];
      if (r.verdict != encap::EncapVerdict::kSend) {
        drop_tun(i);
        ++i;
        continue;
      }
      SendSlot& sl = send_slots[bid];
      sl.dst.sin_addr.s_addr = r.hop->addr.raw;  // copied: the snapshot may go
      sl.dst.sin_port = r.hop->port_be;
      const uint32_t seg = tun_pkts[i].len;
      uint32_t total = seg;
      uint32_t count = 0;
      sl.iov[count] = {tun_pkts[i].data, seg};
      sl.bids[count++] = static_cast<uint16_t>(bid);
      size_t j = i + 1;
      while (gso && j < n && count < kMaxGsoSegments) {
        const encap::EncapResult& next = tun_results[j];
        const uint32_t len = tun_pkts[j].len;
        if (next.verdict != encap::EncapVerdict::kSend || next.hop->addr != r.hop->addr ||
            next.hop->port_be != r.hop->port_be || len > seg || total + len > kMaxGsoBytes) {
          break;
        }
        sl.iov[count] = {tun_pkts[j].data, len};
        sl.bids[count++] = tun_bids[j];
        total += len;
        ++j;
        if (len < seg) break;  // only the last segment may be shorter
      }
      submit_send(sl, bid, count, seg);
      i = j;
    }
    tun_pkts.clear();
    tun_bids.clear();
  }

  void drop_tun(size_t i) {
    switch (tun_results[i].verdict) {
      case encap::EncapVerdict::kSend:
        return;
      case encap::EncapVerdict::kDropBadHeader:
        stats().add(Counter::kDropBadHeaderTun);
        break;
      case encap::EncapVerdict::kDropNoRoute:
        stats().add(Counter::kDropNoRoute);
        send_icmp_unreachable(tun_pkts[i]);
        break;
      case encap::EncapVerdict::kDropTtl:
        stats().add(Counter::kDropTtlExpired);
        break;
    }
    recycle_tun(tun_bids[i]);
  }

  // UDP -> TUN for the collected batch: one WRITE per packet from the very
  // bytes the datagram was received into.
  void flush_udp() {
    if (udp_in.empty()) return;
    const core::RouteSnapshot* routes = w.routes_.current();
    encap::decapsulate_batch(udp_in, *routes, w.opts_.check_peer, udp_verdicts);
    for (size_t i = 0; i < udp_in.size(); ++i) {
      const uint32_t bid = udp_bids[i];
      switch (udp_verdicts[i]) {
        case encap::DecapVerdict::kWrite: {
          io_uring_sqe* sqe = ring->sqe();
          io_uring_prep_write(sqe, kTunFile, udp_in[i].pkt.data, udp_in[i].pkt.len, 0);
          sqe->flags |= IOSQE_FIXED_FILE;
          io_uring_sqe_set_data64(sqe, UserData{Op::kTunWrite, bid}.encode());
          continue;
        }
        case encap::DecapVerdict::kDropBadHeader:
          stats().add(Counter::kDropBadHeaderUdp);
          break;
        case encap::DecapVerdict::kDropUnknownPeer:
          stats().add(Counter::kDropUnknownPeer);
          break;
        case encap::DecapVerdict::kDropTtl:
          stats().add(Counter::kDropTtlExpired);
          break;
      }
      release_udp(bid);
    }
    udp_in.clear();
    udp_bids.clear();
  }

  void handle(const io_uring_cqe* cqe) {
    const UserData ud = UserData::decode(cqe->user_data);
    switch (ud.op) {
      case Op::kTunRead: on_tun_read(cqe); break;
      case Op::kUdpRecv: on_udp_recv(cqe); break;
      case Op::kUdpSend: on_udp_send(cqe, ud.index); break;
      case Op::kTunWrite: on_tun_write(cqe, ud.index); break;
      case Op::kIcmpWrite: on_icmp_write(cqe, ud.index); break;
    }
  }

  void loop() {
    const size_t id = w.id_;
    arm_tun_reads();
    arm_udp_recv();
    __kernel_timespec ts{0, kWaitNanos};
    while (!w.stop_.load(std::memory_order_relaxed)) {
      // Offline while blocked: the control thread need not wait for us to
      // free an old route table. Online again before touching it.
      w.qsbr_.offline(id);
      io_uring_cqe* first = nullptr;
      const int ret = io_uring_submit_and_wait_timeout(ring->get(), &first, 1, &ts, nullptr);
      w.qsbr_.online(id);
      if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY) {
        // Nothing sensible to do but try again; counted by the stop check.
        continue;
      }
      tun_recycled_this_turn = 0;
      unsigned head;
      unsigned seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(ring->get(), head, cqe) {
        handle(cqe);
        ++seen;
      }
      io_uring_cq_advance(ring->get(), seen);
      flush_tun();
      flush_udp();
      tun_bufs->commit();
      udp_bufs->commit();
      // After ENOBUFS, re-arming before any buffer came back would only fail
      // again at once; wait for a recycle (or for nothing to be in flight).
      if (tun_reads_armed == 0 && (tun_recycled_this_turn > 0 || tun_in_flight == 0)) {
        arm_tun_reads();
      } else if (tun_reads_armed > 0 && !multishot_read) {
        arm_tun_reads();
      }
      arm_udp_recv();
    }
    w.qsbr_.offline(id);
  }
};

Worker::Worker(size_t id, core::UniqueFd tun, core::UniqueFd udp, const core::RouteTable& routes,
               core::Qsbr& qsbr, core::WorkerStats& stats, const std::atomic<bool>& stop,
               WorkerOptions opts)
    : id_(id),
      tun_(std::move(tun)),
      udp_(std::move(udp)),
      routes_(routes),
      qsbr_(qsbr),
      stats_(stats),
      stop_(stop),
      opts_(opts) {}

Worker::~Worker() = default;

void Worker::run() noexcept {
  try {
    Impl impl(*this);
    impl.setup();
    state_.store(WorkerState::kRunning, std::memory_order_release);
    impl.loop();
  } catch (const std::exception& e) {
    error_ = e.what();
    qsbr_.offline(id_);
    state_.store(WorkerState::kFailed, std::memory_order_release);
    return;
  }
  state_.store(WorkerState::kStopped, std::memory_order_release);
}

}  // namespace udpring::io
