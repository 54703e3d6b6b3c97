#include "io/dataplane/worker.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ipv4.h"
#include "core/ones_sum.h"
#include "encap/icmp.h"
#include "encap/tcp_offload.h"
#include "encap/udp_decap.h"
#include "encap/udp_encap.h"
#include "io/dataplane/ring.h"

namespace udpring::io {
namespace {

// IORING_OP_READ_MULTISHOT (Linux 6.7). liburing 2.3's headers predate it.
constexpr uint8_t kOpReadMultishot = 49;
// Fixed-file slots registered with the ring.
constexpr int kTunFile = 0;
constexpr int kUdpFile = 1;
constexpr int kSendFile = 2;  // only registered when the worker has a send socket
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
// A TSO super-packet of 64 KiB with an MSS as small as 512 bytes.
constexpr uint32_t kMaxTsoSegments = 128;
// Coalesced TUN writes in flight; each holds one iovec per merged segment.
constexpr uint32_t kRunSlots = 512;
// Idle wake-up period: bounds how long a stop request waits.
constexpr long long kWaitNanos = 200'000'000;

using core::Counter;

// What a TUN write with IFF_VNET_HDR carries in front of a lone packet.
const encap::VnetHdr kZeroVnet{};

}  // namespace

// Everything the loop touches, allocated once at setup. Member order matters:
// the ring is declared last, so it is torn down first, while the arenas that
// in-flight requests point into are still mapped.
struct Worker::Impl {
  Worker& w;
  std::optional<BufRing> tun_bufs;
  std::optional<BufRing> udp_bufs;

  // A UDP send in flight: one datagram, or a train sent as one UDP GSO
  // sendmsg. Taken from a free list; the TUN buffers it reads from are
  // reference-counted and go back to the kernel with the last send.
  struct SendSlot {
    msghdr msg;
    sockaddr_in dst;
    uint32_t datagrams;  // datagrams in this send (segments of the GSO train)
    uint32_t nbids;      // TUN buffers referenced
    bool zc;             // sent with SENDMSG_ZC: buffers are held until the notification
    alignas(cmsghdr) uint8_t cmsg[CMSG_SPACE(sizeof(uint16_t))];
    std::array<iovec, 2 * kMaxGsoSegments> iov;
    std::array<uint16_t, kMaxGsoSegments> bids;
  };
  std::vector<SendSlot> send_slots;
  std::vector<uint32_t> send_free;
  std::vector<uint16_t> tun_refs;
  // The GSO train of TSO segments being filled (see submit_train).
  SendSlot* train = nullptr;
  uint32_t train_seg = 0;    // bytes of each datagram but the last
  uint32_t train_bytes = 0;  // bytes in the train so far

  // TSO split output: per TUN buffer, a header slot per segment.
  std::vector<uint8_t> tso_hdrs;
  // With GSO off, each TSO segment is its own sendmsg. Its msghdr lives with
  // the segment, [bid * kMaxTsoSegments + k], as long as the buffer is held,
  // so a read of up to kMaxTsoSegments segments takes no send slots (a
  // 4-stream run with --no-gso ran the slots dry and dropped 1.2 %).
  struct SegmentSend {
    msghdr msg;
    sockaddr_in dst;
    std::array<iovec, 2> iov;
  };
  std::vector<SegmentSend> segment_sends;
  std::array<iovec, 2 * kMaxTsoSegments> tso_iov;

  // ICMP replies are new bytes (not forwarded payload) and need a home while
  // their TUN write is in flight; a zero vnet header leads when the TUN has one.
  static constexpr size_t kIcmpSlotBytes = encap::kVnetHdrBytes + encap::kIcmpUnreachMaxBytes;
  std::vector<std::array<uint8_t, kIcmpSlotBytes>> icmp_bufs;
  std::vector<uint32_t> icmp_free;

  // Batches collected from one loop turn's completions.
  std::vector<encap::PacketRef> tun_pkts;
  std::vector<uint16_t> tun_bids;
  std::vector<encap::EncapResult> tun_results;
  std::vector<encap::DecapInput> udp_in;
  std::vector<uint16_t> udp_bids;
  std::vector<uint8_t> udp_segs;  // segment index inside its buffer
  std::vector<encap::DecapVerdict> udp_verdicts;
  // Segments of each UDP buffer still being written to the TUN; the buffer
  // goes back to the kernel when its count drops to zero.
  std::vector<uint16_t> udp_refs;

  // TUN writes with a vnet header: a lone packet uses the iovec pair of its
  // (buffer, segment); a coalesced run takes a RunSlot.
  std::vector<std::array<iovec, 2>> single_iov;
  struct RunSlot {
    encap::VnetHdr vnet;
    uint32_t count;
    std::array<iovec, kMaxGroSegments + 1> iov;
    std::array<uint16_t, kMaxGroSegments> bids;
  };
  std::vector<RunSlot> run_slots;
  std::vector<uint32_t> run_free;
  std::vector<encap::PacketRef> write_pkts;
  std::vector<uint16_t> write_bids;
  std::vector<uint8_t> write_segs;
  std::vector<encap::CoalescedRun> runs;

  bool gso = false;       // UDP_SEGMENT sends; cleared for good on EIO
  bool gro = false;       // UDP_GRO enabled on the socket
  bool vnet = false;      // TUN reads and writes carry a virtio_net_hdr
  bool zc = false;        // SENDMSG_ZC for trains; cleared for good on EMSGSIZE

  msghdr recv_template{};  // must outlive the armed multishot recvmsg
  bool multishot_read = false;
  int tun_reads_armed = 0;
  bool udp_recv_armed = false;
  uint32_t tun_recycled_this_turn = 0;
  // Adaptive busy-poll: chances to skip, and the current back-off.
  static constexpr uint32_t kMaxSpinBackoff = 64;
  // A turn that read this many bytes is bulk traffic; for kBulkQuiet after
  // one, the worker does not spin (see busy_wait).
  static constexpr uint64_t kBulkTurnBytes = 16384;
  static constexpr std::chrono::microseconds kBulkQuiet{1000};
  uint64_t turn_bytes = 0;  // read from the TUN and the socket this turn
  std::chrono::steady_clock::time_point last_bulk_turn{};
  uint32_t spin_skip = 0;
  uint32_t spin_backoff = 0;
  uint32_t tun_in_flight = 0;  // TUN buffers referenced by sends in flight
  int send_file = kUdpFile;

  std::unique_ptr<Ring> ring;  // last: destroyed first

  explicit Impl(Worker& worker) : w(worker) {}

  core::WorkerStats& stats() { return w.stats_; }

  void setup() {
    const WorkerOptions& o = w.opts_;
    if (o.cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(o.cpu, &set);
      if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
        throw std::runtime_error("cannot pin worker " + std::to_string(w.id_) + " to CPU " +
                                 std::to_string(o.cpu));
      }
    }
    // Every buffer can complete at once (multishot reads post one CQE per
    // buffer); the kernel refuses a CQ smaller than the SQ or larger than
    // 65536 entries (a full CQ only parks completions on its overflow list).
    const unsigned cq_entries =
        std::min(std::max(4 * (o.tun_buffers + o.udp_buffers), 2 * o.sq_entries), 65536u);
    ring = std::make_unique<Ring>(o.sq_entries, cq_entries, o.sqpoll);
    const int fds[3] = {w.tun_.get(), w.udp_.get(), w.send_.get()};
    ring->register_files(fds, w.send_ ? 3 : 2);
    if (w.send_) send_file = kSendFile;
    tun_bufs.emplace(ring->get(), kTunGroup, o.tun_buffers, o.tun_buf_bytes);
    udp_bufs.emplace(ring->get(), kUdpGroup, o.udp_buffers, o.udp_buf_bytes);
    vnet = o.vnet_hdr;

    // Every send references at least one buffer, and a buffer is in at most
    // three: a TSO read of up to 128 segments may top up the train left open
    // by the reads before it, fill one of 64, and leave one open. (With GSO
    // off its segments use segment_sends instead.) So this never runs dry,
    // except for a moment after zero copy is refused: the refused sends keep
    // their slots until their notifications while copies go out, and a copy
    // that finds no slot is counted (no_buffer, drop_send_error).
    send_slots.resize(3 * size_t{o.tun_buffers});
    for (uint32_t i = 0; i < send_slots.size(); ++i) {
      SendSlot& sl = send_slots[i];
      std::memset(&sl, 0, sizeof sl);
      sl.dst.sin_family = AF_INET;
      sl.msg.msg_name = &sl.dst;
      sl.msg.msg_namelen = sizeof sl.dst;
      sl.msg.msg_iov = sl.iov.data();
      send_free.push_back(i);
    }
    tun_refs.assign(o.tun_buffers, 0);
    if (vnet) {
      tso_hdrs.resize(size_t{o.tun_buffers} * kMaxTsoSegments * encap::kSegHdrSlotBytes);
      segment_sends.resize(size_t{o.tun_buffers} * kMaxTsoSegments);
      for (SegmentSend& ss : segment_sends) {
        std::memset(&ss, 0, sizeof ss);
        ss.dst.sin_family = AF_INET;
        ss.msg.msg_name = &ss.dst;
        ss.msg.msg_namelen = sizeof ss.dst;
        ss.msg.msg_iov = ss.iov.data();
        ss.msg.msg_iovlen = 2;
      }
    }

    udp_refs.assign(o.udp_buffers, 0);
    if (vnet) {
      single_iov.resize(size_t{o.udp_buffers} * kMaxGroSegments);
      run_slots.resize(kRunSlots);
      for (uint32_t i = 0; i < kRunSlots; ++i) run_free.push_back(i);
    }
    gso = o.gso;
    // Before 6.1 the opcode is unknown and every send would fail: copy instead.
    zc = o.send_zc && opcode_supported(IORING_OP_SENDMSG_ZC);
    if (o.gro) {
      const int one = 1;
      gro = setsockopt(w.udp_.get(), SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
    }
    icmp_bufs.resize(kIcmpSlots);
    for (auto& b : icmp_bufs) b.fill(0);
    for (uint32_t i = 0; i < kIcmpSlots; ++i) icmp_free.push_back(i);

    tun_pkts.reserve(o.batch);
    tun_bids.reserve(o.batch);
    tun_results.resize(o.batch);
    // A GRO datagram can add kMaxGroSegments entries past the flush mark.
    const size_t udp_cap = o.batch + kMaxGroSegments;
    udp_in.reserve(udp_cap);
    udp_bids.reserve(udp_cap);
    udp_segs.reserve(udp_cap);
    udp_verdicts.resize(udp_cap);
    write_pkts.reserve(udp_cap);
    write_bids.reserve(udp_cap);
    write_segs.reserve(udp_cap);
    runs.resize(udp_cap);

    recv_template.msg_namelen = sizeof(sockaddr_in);
    recv_template.msg_controllen = gro ? CMSG_SPACE(sizeof(int)) : 0;

    multishot_read = o.multishot_read && opcode_supported(kOpReadMultishot);
    w.paths_ = {ring->features().sqpoll, multishot_read, gro, zc};
    w.features_ = describe(ring->features()) +
                  (multishot_read ? ", TUN READ_MULTISHOT" : ", TUN plain reads") +
                  (vnet ? std::string(", TUN offload (TSO split, ") + core::ones_sum_impl() + " checksums"
                        : std::string()) +
                  (vnet && o.uso ? ", USO split" : "") +
                  (vnet && o.coalesce ? (o.uso ? ", TCP+UDP coalescing)" : ", TCP coalescing)")
                   : vnet ? ")" : "") +
                  ", UDP RECVMSG multishot" + (gso ? ", UDP GSO" : "") + (gro ? ", UDP GRO" : "") +
                  (zc ? ", SENDMSG_ZC" : "") + (w.send_ ? ", own source port" : "") +
                  (o.busy_poll_us ? std::string(o.busy_poll_adaptive ? ", adaptive" : ", always") +
                                         " busy poll " + std::to_string(o.busy_poll_us) + " us"
                                   : "");
  }

  bool opcode_supported(int op) {
    io_uring_probe* probe = io_uring_get_probe_ring(ring->get());
    if (!probe) return false;
    const bool ok = io_uring_opcode_supported(probe, op);
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

  void release_tun(uint32_t bid) {
    --tun_in_flight;
    if (--tun_refs[bid] == 0) recycle_tun(bid);
  }

  // ---- TUN -> UDP ---------------------------------------------------------

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
    turn_bytes += static_cast<uint32_t>(cqe->res);
    uint8_t* buf = tun_bufs->buffer(bid);
    uint32_t len = static_cast<uint32_t>(cqe->res);
    if (vnet) {
      if (len < encap::kVnetHdrBytes) {
        stats().add(Counter::kDropBadHeaderTun);
        recycle_tun(bid);
        return;
      }
      encap::VnetHdr h;
      std::memcpy(&h, buf, sizeof h);
      buf += encap::kVnetHdrBytes;
      len -= encap::kVnetHdrBytes;
      const uint8_t type = h.gso_type & static_cast<uint8_t>(~encap::kVnetGsoEcn);
      if (type == encap::kVnetGsoTcpV4 || (type == encap::kVnetGsoUdpL4 && w.opts_.uso)) {
        flush_tun();  // keep packet order: earlier packets leave first
        send_tso(bid, buf, len, h.gso_size, type == encap::kVnetGsoUdpL4);
        return;
      }
      if (type != encap::kVnetGsoNone ||
          ((h.flags & encap::kVnetFlagNeedsCsum) &&
           !encap::finish_checksum(buf, len, h.csum_start, h.csum_offset))) {
        stats().add(Counter::kTunRxPackets);
        stats().add(Counter::kDropBadHeaderTun);
        recycle_tun(bid);
        return;
      }
    }
    stats().add(Counter::kTunRxPackets);
    stats().add(Counter::kTunRxBytes, len);
    tun_pkts.push_back({buf, len});
    tun_bids.push_back(static_cast<uint16_t>(bid));
    if (tun_pkts.size() == w.opts_.batch) flush_tun();
  }

  // A TSO super-packet: one route lookup, then the segments leave as one
  // GSO train of [rebuilt header][payload slice] iovec pairs.
  void send_tso(uint32_t bid, uint8_t* pkt, uint32_t len, uint16_t gso_size, bool udp) {
    const core::RouteSnapshot* routes = w.routes_.current();
    stats().add(Counter::kTunRxBytes, len);
    if (len < core::kIpv4MinHeaderBytes || (pkt[0] >> 4) != 4) {
      stats().add(Counter::kTunRxPackets);
      stats().add(Counter::kDropBadHeaderTun);
      recycle_tun(bid);
      return;
    }
    const core::NextHop* hop = routes->lookup(core::Ipv4View(pkt).dst());
    uint8_t* hdrs = tso_hdrs.data() + size_t{bid} * kMaxTsoSegments * encap::kSegHdrSlotBytes;
    const encap::TsoSplit split =
        !hop ? encap::TsoSplit{}
        : udp ? encap::uso_split_v4(pkt, len, gso_size, hdrs, kMaxTsoSegments, tso_iov.data())
              : encap::tso_split_v4(pkt, len, gso_size, hdrs, kMaxTsoSegments, tso_iov.data());
    if (!hop || split.status != encap::TsoStatus::kOk) {
      stats().add(Counter::kTunRxPackets);
      if (!hop) {
        stats().add(Counter::kDropNoRoute);
        send_icmp_unreachable({pkt, len});
      } else if (split.status == encap::TsoStatus::kTtlExpired) {
        stats().add(Counter::kDropTtlExpired);
      } else {
        stats().add(Counter::kDropBadHeaderTun);
      }
      recycle_tun(bid);
      return;
    }
    stats().add(Counter::kTunRxPackets, split.segments);
    stats().add(Counter::kTsoReads);
    ++tun_refs[bid];  // held while the segments are being queued
    if (!gso) {
      for (uint32_t k = 0; k < split.segments; ++k) send_segment(bid, k, *hop);
      if (--tun_refs[bid] == 0) recycle_tun(bid);
      return;
    }
    for (uint32_t k = 0; k < split.segments; ++k) {
      const iovec& hdr = tso_iov[2 * k];
      const iovec& body = tso_iov[2 * k + 1];
      const auto bytes = static_cast<uint32_t>(hdr.iov_len + body.iov_len);
      if (train != nullptr &&
          (train->dst.sin_addr.s_addr != hop->addr.raw || train->dst.sin_port != hop->port_be ||
           train_seg != split.seg_bytes || train->datagrams == kMaxGsoSegments ||
           train_bytes + bytes > kMaxGsoBytes)) {
        submit_train();
      }
      if (train == nullptr) {
        train = take_send_slot();
        if (train == nullptr) {
          stats().add(Counter::kNoBuffer);
          stats().add(Counter::kDropSendError);
          continue;
        }
        train->dst.sin_addr.s_addr = hop->addr.raw;
        train->dst.sin_port = hop->port_be;
        train->datagrams = 0;
        train_seg = split.seg_bytes;
        train_bytes = 0;
      }
      SendSlot& t = *train;
      t.iov[2 * t.datagrams] = hdr;
      t.iov[2 * t.datagrams + 1] = body;
      t.bids[t.datagrams++] = static_cast<uint16_t>(bid);
      ++tun_refs[bid];
      train_bytes += bytes;
      if (bytes < train_seg) submit_train();  // only the last datagram may be shorter
    }
    if (--tun_refs[bid] == 0) recycle_tun(bid);
  }

  // Segment k of TUN buffer bid, alone, from its SegmentSend (GSO off).
  void send_segment(uint32_t bid, uint32_t k, const core::NextHop& hop) {
    const uint32_t index = bid * kMaxTsoSegments + k;
    SegmentSend& ss = segment_sends[index];
    ss.dst.sin_addr.s_addr = hop.addr.raw;
    ss.dst.sin_port = hop.port_be;
    ss.iov[0] = tso_iov[2 * k];
    ss.iov[1] = tso_iov[2 * k + 1];
    ++tun_refs[bid];
    ++tun_in_flight;
    io_uring_sqe* sqe = ring->sqe();
    io_uring_prep_sendmsg(sqe, send_file, &ss.msg, 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, UserData{Op::kUdpSendSegment, index}.encode());
  }

  void on_udp_send_segment(const io_uring_cqe* cqe, uint32_t index) {
    count_send(cqe->res, 1);
    release_tun(index / kMaxTsoSegments);
  }

  // Sends the train send_tso has been filling. A train stays open while TSO
  // reads to the same peer with the same segment size follow each other in
  // a loop turn: a 64 KiB super-packet does not fit one UDP GSO send (its
  // segments' own headers take it past 65,507 bytes), and without this its
  // last segments went out as a send of their own, doubling the sends.
  void submit_train() {
    if (train == nullptr) return;
    SendSlot& t = *train;
    train = nullptr;
    t.nbids = t.datagrams;  // one buffer reference per datagram
    submit_send(t, t.datagrams, 2 * t.datagrams, train_seg);
  }

  // Sized so that it cannot run dry (see setup); a null return is a bug
  // guard, counted as no_buffer by the callers.
  SendSlot* take_send_slot() {
    if (send_free.empty()) return nullptr;
    const uint32_t i = send_free.back();
    send_free.pop_back();
    return &send_slots[i];
  }

  // Sends `datagrams` datagrams made of the `niov` iovecs already in `sl`;
  // with more than one they leave as a UDP GSO sendmsg cut every `seg` bytes.
  void submit_send(SendSlot& sl, uint32_t datagrams, uint32_t niov, uint32_t seg) {
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
    tun_in_flight += sl.nbids;
    io_uring_sqe* sqe = ring->sqe();
    // Zero copy only pays for large sends (kernel msg_zerocopy.rst: ~10 KB).
    sl.zc = zc && datagrams > 1;
    if (sl.zc) {
      io_uring_prep_sendmsg_zc(sqe, send_file, &sl.msg, 0);
    } else {
      io_uring_prep_sendmsg(sqe, send_file, &sl.msg, 0);
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(
        sqe, UserData{Op::kUdpSend, static_cast<uint32_t>(&sl - send_slots.data())}.encode());
  }

  void on_udp_send(const io_uring_cqe* cqe, uint32_t slot) {
    SendSlot& sl = send_slots[slot];
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
      gso = false;
      stats().add(Counter::kGsoFallback);
      resend_singly(sl);
    } else if (cqe->res == -EMSGSIZE && sl.zc) {
      // A zero-copy send must fit MAX_SKB_FRAGS pages; a GSO train of many
      // iovecs does not. Stop using zero copy on this worker and send the
      // train again, copied.
      zc = false;
      stats().add(Counter::kSendZcFallback);
      resend_copied(sl);
    } else {
      count_send(cqe->res, sl.datagrams);
      if (cqe->res >= 0 && sl.datagrams > 1) stats().add(Counter::kGsoSends);
    }
    if (!notif_follows) finish_send(slot);
  }

  // The counters of a finished send of `datagrams` datagrams.
  void count_send(int res, uint32_t datagrams) {
    if (res < 0) {
      stats().add(Counter::kDropSendError, datagrams);
      stats().set(Counter::kLastSendErrno, static_cast<uint64_t>(-res));
    } else {
      stats().add(Counter::kUdpTxPackets, datagrams);
      stats().add(Counter::kUdpTxBytes, static_cast<uint64_t>(res));
    }
  }

  void finish_send(uint32_t slot) {
    SendSlot& sl = send_slots[slot];
    for (uint32_t k = 0; k < sl.nbids; ++k) release_tun(sl.bids[k]);
    send_free.push_back(slot);
  }

  void resend_singly(const SendSlot& train) {
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
      ++tun_refs[one.bids[0]];
      submit_send(one, 1, per, 0);
    }
  }

  // The same train through a copying sendmsg; it takes its own buffer
  // references, as the refused send lets go of the train's.
  void resend_copied(const SendSlot& train) {
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
    for (uint32_t k = 0; k < cp->nbids; ++k) ++tun_refs[cp->bids[k]];
    submit_send(*cp, train.datagrams, static_cast<uint32_t>(train.msg.msg_iovlen), seg);
  }

  void send_icmp_unreachable(const encap::PacketRef& offender) {
    if (icmp_free.empty()) return;  // replies are best effort under a storm
    const uint32_t slot = icmp_free.back();
    uint8_t* out = icmp_bufs[slot].data() + encap::kVnetHdrBytes;
    const size_t len = encap::build_net_unreachable(offender.data, offender.len, w.opts_.tun_addr, out);
    if (len == 0) return;
    icmp_free.pop_back();
    io_uring_sqe* sqe = ring->sqe();
    if (vnet) {
      io_uring_prep_write(sqe, kTunFile, icmp_bufs[slot].data(),
                          static_cast<unsigned>(len + encap::kVnetHdrBytes), 0);
    } else {
      io_uring_prep_write(sqe, kTunFile, out, static_cast<unsigned>(len), 0);
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, UserData{Op::kIcmpWrite, slot}.encode());
  }

  // TUN -> UDP for the collected batch: classify, then send straight from
  // the buffers the TUN reads filled. Consecutive packets to the same peer
  // form a train (all but the last of one size) sent as one UDP GSO sendmsg
  // with one iovec per packet; on the wire each is still its own datagram.
  void flush_tun() {
    if (tun_pkts.empty()) return;
    submit_train();  // read before these packets, so it leaves first
    const core::RouteSnapshot* routes = w.routes_.current();
    const size_t n = tun_pkts.size();
    encap::encapsulate_batch(tun_pkts, *routes, tun_results);
    size_t i = 0;
    while (i < n) {
      const encap::EncapResult& r = tun_results[i];
      if (r.verdict != encap::EncapVerdict::kSend) {
        drop_tun(i);
        ++i;
        continue;
      }
      SendSlot* slp = take_send_slot();
      if (slp == nullptr) {
        stats().add(Counter::kNoBuffer);
        stats().add(Counter::kDropSendError);
        recycle_tun(tun_bids[i]);
        ++i;
        continue;
      }
      SendSlot& sl = *slp;
      sl.dst.sin_addr.s_addr = r.hop->addr.raw;  // copied: the snapshot may go
      sl.dst.sin_port = r.hop->port_be;
      const uint32_t seg = tun_pkts[i].len;
      uint32_t total = seg;
      uint32_t count = 0;
      sl.iov[count] = {tun_pkts[i].data, seg};
      sl.bids[count++] = tun_bids[i];
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
      sl.nbids = count;
      for (uint32_t k = 0; k < count; ++k) ++tun_refs[sl.bids[k]];
      submit_send(sl, count, count, seg);
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

  // ---- UDP -> TUN ---------------------------------------------------------

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
    turn_bytes += static_cast<uint32_t>(cqe->res);
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
    // A UDP_GRO cmsg means the kernel built this receive from several
    // datagrams (GRO) or took it whole from a local GSO send. GRO merges only
    // datagrams whose non-zero UDP checksum it validated, and GSO refuses a
    // socket that sends without one, so every byte here has passed a checksum
    // check (or never left the sending host) and need not be summed again
    // before coalescing. A single datagram may carry checksum 0; it keeps the
    // per-segment check.
    bool outer_verified = false;
    if (gro) {
      for (cmsghdr* c = io_uring_recvmsg_cmsg_firsthdr(out, &recv_template); c != nullptr;
           c = io_uring_recvmsg_cmsg_nexthdr(out, &recv_template, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
          int gso_size = 0;
          std::memcpy(&gso_size, CMSG_DATA(c), sizeof gso_size);
          if (gso_size > 0 && static_cast<uint32_t>(gso_size) < len) seg = static_cast<uint32_t>(gso_size);
          outer_verified = gso_size > 0 && w.opts_.trust_outer_checksum;
        }
      }
    }
    uint16_t pieces = 0;
    for (uint32_t off = 0; off < len && pieces < kMaxGroSegments; off += seg) {
      udp_in.push_back({{payload + off, std::min(seg, len - off), outer_verified}, src});
      udp_bids.push_back(static_cast<uint16_t>(bid));
      udp_segs.push_back(static_cast<uint8_t>(pieces));
      ++pieces;
    }
    if (pieces == 0) {  // an empty datagram
      stats().add(Counter::kDropBadHeaderUdp);
      udp_bufs->recycle(bid);
      return;
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

  // UDP -> TUN for the collected batch: validate, then write the very bytes
  // each datagram was received into. With a vnet-header TUN, runs of one TCP
  // flow become one GSO write, which the kernel treats as a single packet
  // all the way to the pod.
  void flush_udp() {
    if (udp_in.empty()) return;
    const core::RouteSnapshot* routes = w.routes_.current();
    encap::decapsulate_batch(udp_in, *routes, w.opts_.check_peer, udp_verdicts);
    for (size_t i = 0; i < udp_in.size(); ++i) {
      const uint32_t bid = udp_bids[i];
      switch (udp_verdicts[i]) {
        case encap::DecapVerdict::kWrite:
          write_pkts.push_back(udp_in[i].pkt);
          write_bids.push_back(static_cast<uint16_t>(bid));
          write_segs.push_back(udp_segs[i]);
          continue;
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
    udp_segs.clear();
    if (vnet) {
      write_vnet();
    } else {
      for (size_t i = 0; i < write_pkts.size(); ++i) {
        io_uring_sqe* sqe = ring->sqe();
        io_uring_prep_write(sqe, kTunFile, write_pkts[i].data, write_pkts[i].len, 0);
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, UserData{Op::kTunWrite, write_bids[i]}.encode());
      }
    }
    write_pkts.clear();
    write_bids.clear();
    write_segs.clear();
  }

  void write_vnet() {
    const size_t n = write_pkts.size();
    // Merging rewrites headers, so only plan runs when every possible run
    // (at most n / 2) is sure to get a slot; otherwise write them singly.
    const bool coalesce = w.opts_.coalesce && run_free.size() >= n / 2 + 1;
    const uint32_t max_run = coalesce ? kMaxGroSegments : 1;
    const encap::CoalescePlan plan =
        encap::plan_tcp_coalescing(write_pkts, max_run, runs, w.opts_.coalesce_udp);
    const size_t nruns = plan.runs;
    // Bad segments are still written singly: the kernel checks and drops them.
    if (plan.checksum_failures) stats().add(Counter::kCoalesceChecksumFailures, plan.checksum_failures);
    for (size_t r = 0; r < nruns; ++r) {
      const encap::CoalescedRun& run = runs[r];
      const uint32_t i = run.first;
      io_uring_sqe* sqe = ring->sqe();
      if (run.count == 1) {
        auto& iov = single_iov[size_t{write_bids[i]} * kMaxGroSegments + write_segs[i]];
        iov[0] = {const_cast<encap::VnetHdr*>(&kZeroVnet), encap::kVnetHdrBytes};
        iov[1] = {write_pkts[i].data, write_pkts[i].len};
        io_uring_prep_writev(sqe, kTunFile, iov.data(), 2, 0);
        io_uring_sqe_set_data64(sqe, UserData{Op::kTunWrite, write_bids[i]}.encode());
      } else {
        const uint32_t slot = run_free.back();
        run_free.pop_back();
        RunSlot& rs = run_slots[slot];
        rs.vnet = run.vnet;
        rs.count = run.count;
        rs.iov[0] = {&rs.vnet, encap::kVnetHdrBytes};
        rs.iov[1] = {write_pkts[i].data, write_pkts[i].len};
        for (uint32_t k = 1; k < run.count; ++k) {
          const encap::PacketRef& p = write_pkts[i + k];
          const size_t hdrs = run.vnet.gso_type == encap::kVnetGsoUdpL4
                                  ? 28
                                  : 20 + (size_t{p.data[32]} >> 4) * 4;
          rs.iov[k + 1] = {p.data + hdrs, p.len - hdrs};
        }
        for (uint32_t k = 0; k < run.count; ++k) rs.bids[k] = write_bids[i + k];
        io_uring_prep_writev(sqe, kTunFile, rs.iov.data(), run.count + 1, 0);
        io_uring_sqe_set_data64(sqe, UserData{Op::kTunWriteRun, slot}.encode());
        stats().add(Counter::kCoalescedWrites);
      }
      sqe->flags |= IOSQE_FIXED_FILE;
    }
  }

  void on_tun_write(const io_uring_cqe* cqe, uint32_t bid) {
    if (cqe->res < 0) {
      stats().add(Counter::kDropTunWriteError);
    } else {
      stats().add(Counter::kTunTxPackets);
      stats().add(Counter::kTunTxBytes, static_cast<uint64_t>(cqe->res) - (vnet ? encap::kVnetHdrBytes : 0));
    }
    release_udp(bid);
  }

  void on_tun_write_run(const io_uring_cqe* cqe, uint32_t slot) {
    RunSlot& rs = run_slots[slot];
    if (cqe->res < 0) {
      stats().add(Counter::kDropTunWriteError, rs.count);
    } else {
      stats().add(Counter::kTunTxPackets, rs.count);
      stats().add(Counter::kTunTxBytes, static_cast<uint64_t>(cqe->res) - encap::kVnetHdrBytes);
    }
    for (uint32_t k = 0; k < rs.count; ++k) release_udp(rs.bids[k]);
    run_free.push_back(slot);
  }

  void on_icmp_write(const io_uring_cqe* cqe, uint32_t slot) {
    if (cqe->res >= 0) stats().add(Counter::kIcmpUnreachSent);
    icmp_free.push_back(slot);
  }

  // ---- loop ----------------------------------------------------------------

  void handle(const io_uring_cqe* cqe) {
    const UserData ud = UserData::decode(cqe->user_data);
    switch (ud.op) {
      case Op::kTunRead: on_tun_read(cqe); break;
      case Op::kUdpRecv: on_udp_recv(cqe); break;
      case Op::kUdpSend: on_udp_send(cqe, ud.index); break;
      case Op::kUdpSendSegment: on_udp_send_segment(cqe, ud.index); break;
      case Op::kTunWrite: on_tun_write(cqe, ud.index); break;
      case Op::kTunWriteRun: on_tun_write_run(cqe, ud.index); break;
      case Op::kIcmpWrite: on_icmp_write(cqe, ud.index); break;
    }
  }

  // --busy-poll: submit and reap without sleeping for up to busy_poll_us.
  // On this kind of VM a sleep/wake costs about 30 us of CPU (the scheduler
  // and the hypervisor) and as much latency, per packet at low rates, so a
  // spin that finds the next packet is cheaper as well as faster. Adaptive
  // mode spins only right after a turn that had completions (an idle worker
  // sleeps at once), and, after a spin that found nothing, skips the next
  // 1, 2, 4 ... 64 chances, so a slow trickle does not keep a core busy.
  // Nor does it spin within kBulkQuiet of a bulk turn (a TSO read or GRO
  // receive): bulk traffic wakes the worker seldom per byte, and spinning
  // between its turns (mostly after the small turns of returning ACKs) cost
  // 15-20 % more daemon CPU per GB with no gain in speed (TCP, 1 and 4
  // streams, against --busy-poll=0 in the same run).
  // Returns true when completions are ready.
  bool busy_wait(bool had_events) {
    const WorkerOptions& o = w.opts_;
    if (o.busy_poll_us == 0) return false;
    if (o.busy_poll_adaptive && !had_events) return false;
    const auto now = std::chrono::steady_clock::now();
    if (o.busy_poll_adaptive) {
      if (turn_bytes >= kBulkTurnBytes) last_bulk_turn = now;
      if (now - last_bulk_turn < kBulkQuiet) return false;
      if (spin_skip > 0) {
        --spin_skip;
        return false;
      }
    }
    const auto deadline = now + std::chrono::microseconds(o.busy_poll_us);
    do {
      io_uring_submit_and_get_events(ring->get());
      if (io_uring_cq_ready(ring->get()) > 0) {
        spin_backoff = 0;
        stats().add(Counter::kSpinHits);
        return true;
      }
      // Let whatever else is runnable on this core (the kernel's network
      // softirq threads, the applications) go first: on a loaded machine a
      // spin must not take their CPU; on an idle one this returns at once.
      if (o.busy_poll_adaptive) sched_yield();
    } while (std::chrono::steady_clock::now() < deadline && !w.stop_.load(std::memory_order_relaxed));
    spin_backoff = std::min(spin_backoff ? spin_backoff * 2 : 1, kMaxSpinBackoff);
    spin_skip = spin_backoff;
    stats().add(Counter::kSpinMisses);
    return false;
  }

  void loop() {
    const size_t id = w.id_;
    arm_tun_reads();
    arm_udp_recv();
    __kernel_timespec ts{0, kWaitNanos};
    unsigned seen = 0;
    while (!w.stop_.load(std::memory_order_relaxed)) {
      // Offline while blocked: the control thread need not wait for us to
      // free an old route table. Online again before touching it.
      w.qsbr_.offline(id);
      if (!busy_wait(seen > 0)) {
        io_uring_cqe* first = nullptr;
        io_uring_submit_and_wait_timeout(ring->get(), &first, 1, &ts, nullptr);
      }
      w.qsbr_.online(id);
      tun_recycled_this_turn = 0;
      turn_bytes = 0;
      unsigned head;
      seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(ring->get(), head, cqe) {
        handle(cqe);
        ++seen;
      }
      io_uring_cq_advance(ring->get(), seen);
      flush_tun();
      submit_train();
      flush_udp();
      tun_bufs->commit();
      udp_bufs->commit();
      // After ENOBUFS, re-arming before any buffer came back would only fail
      // again at once; wait for a recycle (or for nothing to be in flight).
      if (tun_reads_armed == 0 && (tun_recycled_this_turn > 0 || tun_in_flight == 0)) {
        arm_tun_reads();
      } else if (!multishot_read) {
        arm_tun_reads();
      }
      arm_udp_recv();
    }
    w.qsbr_.offline(id);
    shutdown();
  }

  // Cancel everything in flight and drop the registered files now, not in
  // the kernel's deferred ring teardown: otherwise the TUN queue and the
  // socket stay open after we exit, and a daemon restarted at once finds the
  // port taken and attaches to the dying device.
  void shutdown() {
    io_uring_sqe* sqe = ring->sqe();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, 0);
    __kernel_timespec ts{0, 20'000'000};
    for (int i = 0; i < 10; ++i) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_submit_and_wait_timeout(ring->get(), &cqe, 1, &ts, nullptr) < 0) break;
      unsigned head;
      unsigned seen = 0;
      io_uring_for_each_cqe(ring->get(), head, cqe) { ++seen; }
      io_uring_cq_advance(ring->get(), seen);
    }
    io_uring_unregister_files(ring->get());
  }
};

Worker::Worker(size_t id, core::UniqueFd tun, core::UniqueFd udp, core::UniqueFd send,
               const core::RouteTable& routes,
               core::Qsbr& qsbr, core::WorkerStats& stats, const std::atomic<bool>& stop,
               WorkerOptions opts)
    : id_(id),
      tun_(std::move(tun)),
      udp_(std::move(udp)),
      send_(std::move(send)),
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
