#include "io/dataplane/worker.h"

#include <netinet/udp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/ones_sum.h"
#include "io/dataplane/busy_poll.h"
#include "io/dataplane/ring.h"
#include "io/dataplane/tun_to_udp.h"
#include "io/dataplane/udp_to_tun.h"
#include "io/dataplane/worker_context.h"

namespace udpring::io {
namespace {

// Idle wake-up period: bounds how long a stop request waits.
constexpr long long kWaitNanos = 200'000'000;

// Every buffer can complete at once (multishot reads post one CQE per
// buffer); the kernel refuses a CQ smaller than the SQ or larger than 65536
// entries (a full CQ only parks completions on its overflow list).
unsigned cq_entries(const WorkerOptions& o) {
  return std::min(std::max(4 * (o.tun_buffers + o.udp_buffers), 2 * o.ring_entries), 65536u);
}

bool opcode_supported(Ring& ring, int op) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring.get());
  if (!probe) return false;
  const bool ok = io_uring_opcode_supported(probe, op);
  io_uring_free_probe(probe);
  return ok;
}

void pin_to_cpu(size_t id, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
    throw std::runtime_error("cannot pin worker " + std::to_string(id) + " to CPU " +
                             std::to_string(cpu));
  }
}

std::string describe(const RingSetup& ring, const WorkerOptions& o, const FastPaths& p,
                     bool gso, bool own_port) {
  const bool vnet = o.tun_offload;
  return describe(ring) + (p.multishot ? ", TUN READ_MULTISHOT" : ", TUN plain reads") +
         (vnet ? std::string(", TUN offload (TSO split, ") + core::ones_sum_impl() + " checksums"
               : std::string()) +
         (vnet && o.uso ? ", USO split" : "") +
         (vnet && o.coalesce ? (o.uso ? ", TCP+UDP coalescing)" : ", TCP coalescing)")
          : vnet             ? ")"
                             : "") +
         ", UDP RECVMSG multishot" + (gso ? ", UDP GSO" : "") + (p.gro ? ", UDP GRO" : "") +
         (p.send_zc ? ", SENDMSG_ZC" : "") + (own_port ? ", own source port" : "") +
         (o.busy_poll_us ? ", busy poll " + std::string(encap::busy_poll_mode_name(o.busy_poll_mode)) +
                               " up to " + std::to_string(o.busy_poll_us) + " us"
                         : "");
}

}  // namespace

// Everything the loop touches, allocated once at setup. Member order matters:
// the ring is declared last, so it is torn down first, while the buffers and
// the send and write slots that in-flight requests point into still exist.
struct Worker::Impl {
  Worker& w;
  std::optional<BufRing> tun_bufs;
  std::optional<BufRing> udp_bufs;
  std::optional<WorkerContext> ctx;
  std::optional<TunToUdp> tx;
  std::optional<UdpToTun> rx;
  std::optional<BusyPoll> busy;
  std::unique_ptr<Ring> ring;  // last: destroyed first
  uint64_t wake_value = 0;     // what the wake read fills

  explicit Impl(Worker& worker) : w(worker) {}

  void setup() {
    const WorkerOptions& o = w.opts_;
    if (o.cpu >= 0) pin_to_cpu(w.id_, o.cpu);
    ring = std::make_unique<Ring>(o.ring_entries, cq_entries(o), o.sqpoll);
    const int fds[3] = {w.tun_.get(), w.udp_.get(), w.send_.get()};
    ring->register_files(fds, w.send_ ? 3 : 2);
    tun_bufs.emplace(ring->get(), kTunGroup, o.tun_buffers, o.tun_buf_bytes);
    udp_bufs.emplace(ring->get(), kUdpGroup, o.udp_buffers, o.udp_buf_bytes);

    FastPaths& got = w.fast_paths_;
    got.sqpoll = ring->setup().sqpoll;
    got.multishot = o.multishot && opcode_supported(*ring, kOpReadMultishot);
    // Before 6.1 the opcode is unknown and every send would fail: copy instead.
    got.send_zc = o.send_zc && opcode_supported(*ring, IORING_OP_SENDMSG_ZC);
    if (o.gro) {
      const int one = 1;
      got.gro = setsockopt(w.udp_.get(), SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
    }
    ctx.emplace(WorkerContext{*ring, o, w.stats_, w.routes_});
    tx.emplace(*ctx, *tun_bufs, w.send_ ? kSendFile : kUdpFile, o.gso, got.send_zc, got.multishot);
    rx.emplace(*ctx, *udp_bufs, got.gro);
    busy.emplace(*ring, w.stats_, w.stop_, o.busy_poll_us, o.busy_poll_mode);
    w.fast_paths_text_ = describe(ring->setup(), o, got, o.gso, static_cast<bool>(w.send_));
  }

  void handle(const io_uring_cqe* cqe) {
    const UserData ud = UserData::decode(cqe->user_data);
    switch (ud.op) {
      case Op::kTunRead: tx->on_read(cqe); break;
      case Op::kUdpSend: tx->on_send(cqe, ud.index); break;
      case Op::kUdpSendSegment: tx->on_send_segment(cqe, ud.index); break;
      case Op::kIcmpWrite: tx->on_icmp_write(cqe, ud.index); break;
      case Op::kUdpRecv: rx->on_recv(cqe); break;
      case Op::kTunWrite: rx->on_write(cqe, ud.index); break;
      case Op::kTunWriteRun: rx->on_write_run(cqe, ud.index); break;
      case Op::kIcmpSend: rx->on_icmp_send(cqe, ud.index); break;
      case Op::kWake: break;  // the loop's condition sees the stop
    }
  }

  // Once: a read of the wake eventfd, which completes only when the daemon
  // stops us (a plain fd: it is not in the registered set).
  void arm_wake() {
    if (!w.wake_) return;
    io_uring_sqe* sqe = ring->sqe();
    io_uring_prep_read(sqe, w.wake_.get(), &wake_value, sizeof wake_value, 0);
    io_uring_sqe_set_data64(sqe, UserData{Op::kWake, 0}.encode());
  }

  // One turn: block (or spin) for completions, handle them all, then send
  // and write what they brought as batches and hand buffers back.
  void loop() {
    const size_t id = w.id_;
    tx->arm_reads();
    rx->arm_recv();
    arm_wake();
    __kernel_timespec ts{0, kWaitNanos};
    unsigned seen = 0;
    while (!w.stop_.load(std::memory_order_relaxed)) {
      // Offline while blocked: the control thread need not wait for us to
      // free an old route table. Online again before touching it.
      w.qsbr_.offline(id);
      if (!busy->wait(seen > 0, ctx->turn)) {
        io_uring_cqe* first = nullptr;
        io_uring_submit_and_wait_timeout(ring->get(), &first, 1, &ts, nullptr);
      }
      w.qsbr_.online(id);
      tx->begin_turn();
      rx->begin_turn();
      ctx->turn = {};
      unsigned head;
      seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(ring->get(), head, cqe) {
        handle(cqe);
        ++seen;
      }
      io_uring_cq_advance(ring->get(), seen);
      tx->flush();
      rx->flush();
      tun_bufs->commit();
      udp_bufs->commit();
      if (ctx->fatal_errno) break;
      tx->rearm();
      rx->arm_recv();
    }
    w.qsbr_.offline(id);
    shutdown();
    if (ctx->fatal_errno) throw std::runtime_error(fatal_message());
  }

  // What the daemon logs before it exits: the device, the request, the errno.
  std::string fatal_message() const {
    const core::CompletionOp op = ctx->fatal_op;
    const bool tun = op == core::CompletionOp::kTunRead || op == core::CompletionOp::kTunWrite ||
                     op == core::CompletionOp::kIcmpWrite;
    const std::string what = tun ? "TUN device " + w.opts_.tun_name : std::string("UDP socket");
    return what + ": " + std::string(core::completion_op_name(op)) + " failed with " +
           core::errno_name(ctx->fatal_errno) + " (" + std::strerror(ctx->fatal_errno) + ")" +
           (tun ? ": the device was deleted, brought down or detached" : "") +
           "; stopping so that systemd or kubelet restarts udpringd";
  }

  // Cancel everything in flight and drop the registered files now, not in
  // the kernel's deferred ring teardown: otherwise the TUN queue and the
  // socket stay open after we exit, and a daemon restarted at once finds the
  // port taken and attaches to the dying device.
  void shutdown() {
    io_uring_sqe* sqe = ring->sqe();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, 0);
    // The cancelled requests complete at once; the wait that times out
    // ends it, and is what a restart waits for.
    __kernel_timespec ts{0, 5'000'000};
    for (int i = 0; i < 40; ++i) {
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

size_t Worker::peak_bytes(const WorkerOptions& o) {
  // Ring memory: SQ entries and indices, CQ entries (kernel pages, mapped
  // into the process and counted in its RSS).
  const size_t ring = size_t{o.ring_entries} * (sizeof(io_uring_sqe) + sizeof(unsigned)) +
                      size_t{cq_entries(o)} * sizeof(io_uring_cqe);
  return size_t{o.tun_buffers} * o.tun_buf_bytes + size_t{o.udp_buffers} * o.udp_buf_bytes +
         TunToUdp::table_bytes(o) + UdpToTun::table_bytes(o) + ring;
}

Worker::Worker(size_t id, core::UniqueFd tun, core::UniqueFd udp, core::UniqueFd send,
               const core::RouteTable& routes, core::Qsbr& qsbr, core::WorkerStats& stats,
               const std::atomic<bool>& stop, WorkerOptions opts)
    : id_(id),
      tun_(std::move(tun)),
      udp_(std::move(udp)),
      send_(std::move(send)),
      // Blocking: io_uring would complete a read of a non-blocking one with
      // EAGAIN instead of waiting.
      wake_(eventfd(0, EFD_CLOEXEC)),
      routes_(routes),
      qsbr_(qsbr),
      stats_(stats),
      stop_(stop),
      opts_(opts) {}

Worker::~Worker() = default;

void Worker::wake() noexcept {
  if (wake_) (void)eventfd_write(wake_.get(), 1);
}

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
