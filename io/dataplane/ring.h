#pragma once
// RAII owners for one worker's io_uring and its provided-buffer rings, and the
// typed user_data that every SQE carries.

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace udpring::io {

/// What a completion belongs to. Encoded in user_data, decoded in one place.
enum class Op : uint8_t { kTunRead = 1, kUdpRecv, kUdpSend, kUdpSendSegment, kTunWrite, kTunWriteRun, kIcmpWrite,
                          kIcmpSend, kWake };

/// user_data layout: op in bits 56..63, an index (buffer id / slot) in 0..31.
struct UserData {
  Op op;
  uint32_t index;

  uint64_t encode() const noexcept {
    return (uint64_t{static_cast<uint8_t>(op)} << 56) | index;
  }
  static UserData decode(uint64_t v) noexcept {
    return UserData{static_cast<Op>(v >> 56), static_cast<uint32_t>(v)};
  }
};
static_assert(sizeof(uint64_t) == sizeof(io_uring_sqe::user_data));

/// The io_uring setup flags the kernel accepted, for logging and fallbacks
/// (the data plane's fast paths as a whole are FastPaths, io/dataplane/worker.h).
struct RingSetup {
  bool single_issuer = false;
  bool defer_taskrun = false;
  bool coop_taskrun = false;
  bool registered_ring_fd = false;
  bool sqpoll = false;
};

/// One io_uring instance. Create it on the thread that will submit to it:
/// SINGLE_ISSUER and DEFER_TASKRUN bind the ring to that thread.
class Ring {
 public:
  /// Sets up a ring with `sq_entries` submission and `cq_entries` completion
  /// slots, trying SINGLE_ISSUER|DEFER_TASKRUN (6.1), then COOP_TASKRUN (5.19),
  /// then plain. Throws std::system_error naming io_uring_queue_init_params.
  /// With `sqpoll`, IORING_SETUP_SQPOLL is tried first (a kernel thread
  /// polls the SQ; it costs a CPU while busy).
  Ring(unsigned sq_entries, unsigned cq_entries, bool sqpoll = false);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  io_uring* get() noexcept { return &ring_; }
  const RingSetup& setup() const noexcept { return setup_; }

  /// An SQE, submitting queued ones first if the SQ is full. Never null: a
  /// submit frees SQ slots as soon as the kernel has consumed them.
  io_uring_sqe* sqe() noexcept;

  /// Registers `fds` as fixed files 0..n-1 (saves an fget/fput per op).
  void register_files(const int* fds, unsigned n);

 private:
  io_uring ring_{};
  RingSetup setup_;
};

/// A provided-buffer ring (kernel 5.19) with its own arena of equal-size
/// buffers. The kernel picks a buffer per completion; the worker gives it
/// back with recycle() and makes the returns visible once per loop turn with
/// commit(). Destroy it after the Ring (ring teardown drops registrations and
/// must happen while the arena is still mapped).
class BufRing {
 public:
  /// `count` must be a power of two <= 32768. Throws std::system_error.
  BufRing(io_uring* ring, uint16_t group_id, uint32_t count, uint32_t buf_bytes);
  ~BufRing();
  BufRing(const BufRing&) = delete;
  BufRing& operator=(const BufRing&) = delete;

  uint16_t group_id() const noexcept { return group_id_; }
  uint32_t count() const noexcept { return count_; }
  uint32_t buf_bytes() const noexcept { return buf_bytes_; }
  uint8_t* buffer(uint32_t bid) const noexcept { return arena_ + size_t{bid} * buf_bytes_; }

  /// Queues buffer `bid` to be handed back to the kernel on commit().
  void recycle(uint32_t bid) noexcept {
    io_uring_buf_ring_add(br_, buffer(bid), buf_bytes_, static_cast<uint16_t>(bid),
                          io_uring_buf_ring_mask(count_), pending_++);
  }
  /// Publishes all recycled buffers to the kernel (one release store).
  void commit() noexcept {
    if (pending_) {
      io_uring_buf_ring_advance(br_, pending_);
      pending_ = 0;
    }
  }

 private:
  io_uring_buf_ring* br_ = nullptr;
  uint8_t* arena_ = nullptr;
  size_t ring_bytes_ = 0;
  size_t arena_bytes_ = 0;
  uint16_t group_id_;
  uint32_t count_;
  uint32_t buf_bytes_;
  int pending_ = 0;
};

/// "SINGLE_ISSUER DEFER_TASKRUN ..." for the startup log.
std::string describe(const RingSetup& f);

}  // namespace udpring::io
