#pragma once
// One forwarding worker: a thread that owns an io_uring, one TUN queue, one
// UDP socket, two provided-buffer rings and its stats, and moves packets both
// ways between them. Workers share nothing but the read-only route table.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/qsbr.h"
#include "core/route_table.h"
#include "core/unique_fd.h"
#include "core/worker_stats.h"
#include "encap/busy_poll_policy.h"
#include "encap/udp_decap.h"

namespace udpring::io {

struct WorkerOptions {
  unsigned ring_entries = 1024;    // SQ slots; the CQ gets 4x the buffer count
  uint32_t tun_buffers = 1024;     // power of two; each holds one TUN packet
  uint32_t udp_buffers = 1024;     // power of two; each holds one datagram
  uint32_t tun_buf_bytes = 2048;   // >= TUN MTU
  uint32_t udp_buf_bytes = 2048;   // >= largest datagram + recvmsg header and cmsg
                                   // (64 KiB + 128 with GRO)
  uint32_t batch = 64;             // packets classified per encap/decap call
  bool multishot = true;           // use READ_MULTISHOT on the TUN if the kernel has it
  encap::DecapPolicy peer_policy;  // which datagrams reach the TUN (--peer-check)
  bool gso = true;                 // batch sends to one peer with UDP_SEGMENT
  bool gro = true;                 // receive coalesced datagrams with UDP_GRO
  bool tun_offload = false;        // the TUN was opened with IFF_VNET_HDR + offloads
  bool coalesce = true;            // with tun_offload: merge TCP segments into GSO writes
  bool uso = false;                // with tun_offload: the TUN accepted UDP GSO (USO4/6)
  bool coalesce_udp = false;       // with uso and coalesce: merge UDP runs too
  bool trust_outer_checksum = true; // coalesce GRO receives without summing each segment again
  core::Be32 tun_addr;             // source of ICMP errors (the flannel0 address)
  std::string tun_name;            // the TUN device, for the error that stops a worker
  bool icmp_time_exceeded = true;  // answer an expired TTL with ICMP Time Exceeded
  uint32_t icmp_rate = 10;         // ICMP errors per second per source (0: no limit)
  uint32_t icmp_burst = 10;
  bool sqpoll = false;             // IORING_SETUP_SQPOLL: a kernel thread submits
  unsigned busy_poll_us = 0;       // spin this long for completions before blocking
  encap::BusyPollMode busy_poll_mode = encap::BusyPollMode::kAlways;
  bool send_zc = false;            // IORING_OP_SENDMSG_ZC for sends of 2+ datagrams
  int cpu = -1;                    // pin the worker thread to this CPU (-1: no pinning)
};

/// The fast paths a worker asked its kernel for and was granted; a request
/// the kernel refuses leaves the worker on the plain path, and the control
/// thread logs and exports the difference (io/control/fast_paths.h).
struct FastPaths {
  bool sqpoll = false;          // the ring has IORING_SETUP_SQPOLL
  bool multishot = false;       // the kernel has IORING_OP_READ_MULTISHOT
  bool gro = false;             // UDP_GRO was accepted on the socket
  bool send_zc = false;         // the kernel has IORING_OP_SENDMSG_ZC
};

/// Lifecycle as seen by the control thread.
enum class WorkerState : int { kStarting, kRunning, kFailed, kStopped };

class Worker {
 public:
  /// Takes ownership of one TUN queue and one UDP socket. `routes`, `qsbr`,
  /// `stats` and `stop` must outlive the worker; `id` is its QSBR reader id.
  /// `send` is an optional second socket to send from (the worker's own
  /// source port, which names the peer's worker that receives it: see
  /// io/kernel/port_steering.h); without it the worker sends from `udp`.
  Worker(size_t id, core::UniqueFd tun, core::UniqueFd udp, core::UniqueFd send,
         const core::RouteTable& routes,
         core::Qsbr& qsbr, core::WorkerStats& stats, const std::atomic<bool>& stop,
         WorkerOptions opts);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Thread body: sets up the ring (on this thread, as SINGLE_ISSUER wants),
  /// forwards until `stop` is set, then tears down. Never throws: a setup
  /// failure leaves state() == kFailed and the reason in error().
  void run() noexcept;

  WorkerState state() const noexcept { return state_.load(std::memory_order_acquire); }
  /// Valid once state() is kFailed.
  const std::string& error() const noexcept { return error_; }
  /// The most memory a worker with these options takes once its traffic
  /// has used every buffer: the buffer arenas, the tables sized by them and
  /// the ring. The arenas fault in page by page as packets land, so an
  /// idle worker takes far less.
  static size_t peak_bytes(const WorkerOptions& o);

  /// Ends the worker's wait for completions at once (after `stop` is set:
  /// an idle worker would otherwise notice only at its next timeout).
  void wake() noexcept;

  /// Once the thread has returned from run(): its TUN queue, socket and send
  /// socket, still open, for the udpringd taking over (the ring has let go
  /// of them).
  struct Files {
    core::UniqueFd tun, udp, send;
  };
  Files release_files() { return {std::move(tun_), std::move(udp_), std::move(send_)}; }

  /// The fast paths in use as one line for the log, once running.
  const std::string& fast_paths_text() const noexcept { return fast_paths_text_; }
  /// What the kernel granted of what WorkerOptions asked for, once running.
  const FastPaths& fast_paths() const noexcept { return fast_paths_; }

 private:
  struct Impl;
  size_t id_;
  core::UniqueFd tun_;
  core::UniqueFd udp_;
  core::UniqueFd send_;
  core::UniqueFd wake_;  // an eventfd the ring has a read armed on
  const core::RouteTable& routes_;
  core::Qsbr& qsbr_;
  core::WorkerStats& stats_;
  const std::atomic<bool>& stop_;
  WorkerOptions opts_;
  std::string error_;
  std::string fast_paths_text_;
  FastPaths fast_paths_;
  // Release on store so that error_/fast_paths_text_/fast_paths_ written before are visible to
  // the control thread after its acquire load.
  std::atomic<WorkerState> state_{WorkerState::kStarting};
};

}  // namespace udpring::io
