#include "io/dataplane/ring.h"

#include <sys/mman.h>

#include <cerrno>
#include <system_error>

namespace udpring::io {

Ring::Ring(unsigned sq_entries, unsigned cq_entries, bool sqpoll) {
  struct Attempt {
    unsigned flags;
    RingSetup setup;
  };
  if (sqpoll) {
    io_uring_params p{};
    p.flags = IORING_SETUP_SQPOLL | IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    p.sq_thread_idle = 1000;  // ms of idleness before the SQ thread sleeps
    if (io_uring_queue_init_params(sq_entries, &ring_, &p) == 0) {
      setup_.sqpoll = true;
      setup_.registered_ring_fd = io_uring_register_ring_fd(&ring_) == 1;
      return;
    }
  }
  const Attempt attempts[] = {
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, {true, true, false, false}},
      {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, {false, false, true, false}},
      {0, {}},
  };
  int ret = -EINVAL;
  for (const Attempt& a : attempts) {
    io_uring_params p{};
    p.flags = a.flags | IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    ret = io_uring_queue_init_params(sq_entries, &ring_, &p);
    if (ret == 0) {
      setup_ = a.setup;
      break;
    }
    if (ret != -EINVAL) break;  // EINVAL = flag unknown to this kernel; others are real
  }
  if (ret < 0) {
    // ENOSYS/EPERM are what a seccomp filter answers: container runtimes'
    // default profiles (Docker, podman, containerd's RuntimeDefault) refuse
    // io_uring, so name the pod-spec field as for the TUN and NET_ADMIN.
    throw std::system_error(
        -ret, std::generic_category(),
        "io_uring_queue_init_params (io_uring needs Linux 5.19+ and must not be disabled by "
        "kernel.io_uring_disabled or seccomp; in a container, the runtime's default seccomp "
        "profile refuses it: in a pod spec, set securityContext.seccompProfile.type: Unconfined, "
        "or a Localhost profile that allows io_uring_setup, io_uring_enter and "
        "io_uring_register)");
  }
  setup_.registered_ring_fd = io_uring_register_ring_fd(&ring_) == 1;
}

Ring::~Ring() { io_uring_queue_exit(&ring_); }

io_uring_sqe* Ring::sqe() noexcept {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (s == nullptr) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void Ring::register_files(const int* fds, unsigned n) {
  const int ret = io_uring_register_files(&ring_, fds, n);
  if (ret < 0) throw std::system_error(-ret, std::generic_category(), "io_uring_register_files");
}

BufRing::BufRing(io_uring* ring, uint16_t group_id, uint32_t count, uint32_t buf_bytes)
    : group_id_(group_id), count_(count), buf_bytes_(buf_bytes) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0) {
    throw std::system_error(EINVAL, std::generic_category(),
                            "buffer ring size " + std::to_string(count) +
                                " must be a power of two <= 32768");
  }
  ring_bytes_ = sizeof(io_uring_buf) * count;
  void* r = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (r == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap buffer ring");
  br_ = static_cast<io_uring_buf_ring*>(r);

  // Not MAP_POPULATE: a page is faulted in when a packet first lands on
  // it, so a buffer that only ever held small packets costs one page, not
  // 64 KiB, and an idle worker little more than its tables.
  arena_bytes_ = size_t{count} * buf_bytes;
  void* a = mmap(nullptr, arena_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (a == MAP_FAILED) {
    const int err = errno;
    munmap(br_, ring_bytes_);
    throw std::system_error(err, std::generic_category(),
                            "mmap " + std::to_string(arena_bytes_) + " bytes of packet buffers");
  }
  arena_ = static_cast<uint8_t*>(a);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br_);
  reg.ring_entries = count;
  reg.bgid = group_id;
  const int ret = io_uring_register_buf_ring(ring, &reg, 0);
  if (ret < 0) {
    munmap(arena_, arena_bytes_);
    munmap(br_, ring_bytes_);
    throw std::system_error(-ret, std::generic_category(),
                            "io_uring_register_buf_ring (provided-buffer rings need Linux 5.19+)");
  }
  io_uring_buf_ring_init(br_);
  for (uint32_t bid = 0; bid < count; ++bid) recycle(bid);
  commit();
}

BufRing::~BufRing() {
  munmap(arena_, arena_bytes_);
  munmap(br_, ring_bytes_);
}

std::string describe(const RingSetup& f) {
  std::string s;
  if (f.single_issuer) s += "SINGLE_ISSUER ";
  if (f.defer_taskrun) s += "DEFER_TASKRUN ";
  if (f.coop_taskrun) s += "COOP_TASKRUN ";
  if (f.registered_ring_fd) s += "REGISTERED_RING_FD ";
  if (f.sqpoll) s += "SQPOLL ";
  if (s.empty()) return "no optional ring features";
  s.pop_back();
  return s;
}

}  // namespace udpring::io
