#include "io/worker.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
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

  // One send context per TUN buffer: a TUN buffer is in at most one send at a
  // time, so its id indexes the msghdr that carries it. No pool, no locking.
  struct SendSlot {
    msghdr msg;
    iovec iov;
    sockaddr_in dst;
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
    for (SendSlot& s : send_slots) {
      std::memset(&s, 0, sizeof s);
      s.dst.sin_family = AF_INET;
      s.msg.msg_name = &s.dst;
      s.msg.msg_namelen = sizeof s.dst;
      s.msg.msg_iov = &s.iov;
      s.msg.msg_iovlen = 1;
    }
    icmp_bufs.resize(kIcmpSlots);
    for (uint32_t i = 0; i < kIcmpSlots; ++i) icmp_free.push_back(i);

    tun_pkts.reserve(o.batch);
    tun_bids.reserve(o.batch);
    tun_results.resize(o.batch);
    udp_in.reserve(o.batch);
    udp_bids.reserve(o.batch);
    udp_verdicts.resize(o.batch);

    recv_template.msg_namelen = sizeof(sockaddr_in);
    recv_template.msg_controllen = 0;

    multishot_read = o.multishot_read && probe_read_multishot();
    w.features_ = describe(ring->features()) +
                  (multishot_read ? ", TUN READ_MULTISHOT" : ", TUN plain reads") +
                  ", UDP RECVMSG multishot";
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
    udp_in.push_back({{payload, len}, src});
    udp_bids.push_back(static_cast<uint16_t>(bid));
    if (udp_in.size() == w.opts_.batch) flush_udp();
  }

  void on_udp_send(const io_uring_cqe* cqe, uint32_t bid) {
    --tun_in_flight;
    if (cqe->res < 0) {
      stats().add(Counter::kDropSendError);
    } else {
      stats().add(Counter::kUdpTxPackets);
      stats().add(Counter::kUdpTxBytes, static_cast<uint64_t>(cqe->res));
    }
    recycle_tun(bid);
  }

  void on_tun_write(const io_uring_cqe* cqe, uint32_t bid) {
    if (cqe->res < 0) {
      stats().add(Counter::kDropTunWriteError);
    } else {
      stats().add(Counter::kTunTxPackets);
      stats().add(Counter::kTunTxBytes, static_cast<uint64_t>(cqe->res));
    }
    udp_bufs->recycle(bid);
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

  // TUN -> UDP for the collected batch: classify, then one SENDMSG per packet
  // straight from the buffer the TUN read filled.
  void flush_tun() {
    if (tun_pkts.empty()) return;
    const core::RouteSnapshot* routes = w.routes_.current();
    encap::encapsulate_batch(tun_pkts, *routes, tun_results);
    for (size_t i = 0; i < tun_pkts.size(); ++i) {
      const uint32_t bid = tun_bids[i];
      const encap::EncapResult& r = tun_results[i];
      switch (r.verdict) {
        case encap::EncapVerdict::kSend: {
          SendSlot& s = send_slots[bid];
          s.iov.iov_base = tun_pkts[i].data;
          s.iov.iov_len = tun_pkts[i].len;
          s.dst.sin_addr.s_addr = r.hop->addr.raw;  // copied: the snapshot may go
          s.dst.sin_port = r.hop->port_be;
          io_uring_sqe* sqe = ring->sqe();
          io_uring_prep_sendmsg(sqe, kUdpFile, &s.msg, 0);
          sqe->flags |= IOSQE_FIXED_FILE;
          io_uring_sqe_set_data64(sqe, UserData{Op::kUdpSend, bid}.encode());
          ++tun_in_flight;
          continue;  // the buffer comes back with the send's completion
        }
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
      recycle_tun(bid);
    }
    tun_pkts.clear();
    tun_bids.clear();
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
      udp_bufs->recycle(bid);
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
