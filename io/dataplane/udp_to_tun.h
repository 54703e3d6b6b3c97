#pragma once
// UDP -> TUN, one worker's half: receives datagrams with one multishot
// recvmsg into provided buffers (several per receive with UDP GRO), checks
// them in batches (encap/udp_decap.h) and writes the very bytes received to
// its TUN queue. With TUN offload, runs of one flow are merged into one GSO
// write (encap/coalesce.h), which the kernel treats as a single packet all
// the way to the pod.
//
// Owns the per-buffer segment counts: a UDP buffer goes back to the kernel
// when the last TUN write of a packet in it completes.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <vector>

#include "encap/coalesce.h"
#include "encap/icmp.h"
#include "encap/packet_ref.h"
#include "encap/udp_decap.h"
#include "encap/vnet_hdr.h"
#include "io/dataplane/worker_context.h"

namespace udpring::io {

class UdpToTun {
 public:
  /// `gro`: the socket accepted UDP_GRO (worker setup).
  UdpToTun(WorkerContext& ctx, BufRing& bufs, bool gro);

  /// Start of a loop turn.
  void begin_turn() noexcept { recycled_this_turn_ = 0; }
  /// Keeps the multishot recvmsg armed (not while starved of buffers).
  void arm_recv();
  /// End of a loop turn, after the completions: writes what the turn received.
  void flush();

  void on_recv(const io_uring_cqe* cqe);
  void on_write(const io_uring_cqe* cqe, uint32_t bid);
  void on_write_run(const io_uring_cqe* cqe, uint32_t slot);
  void on_icmp_send(const io_uring_cqe* cqe, uint32_t slot);

  bool gro() const noexcept { return gro_; }

  /// Bytes of the tables the constructor allocates for these options, for
  /// the memory plan.
  static size_t table_bytes(const WorkerOptions& o);

 private:
  // A GRO'd datagram holds at most this many segments (UDP_GRO_CNT_MAX).
  static constexpr uint32_t kMaxGroSegments = 64;
  // Coalesced TUN writes in flight; each holds one iovec per merged segment.
  static constexpr uint32_t kRunSlots = 512;

  struct RunSlot {
    encap::VnetHdr vnet;
    uint32_t count;
    std::array<iovec, kMaxGroSegments + 1> iov;
    std::array<uint16_t, kMaxGroSegments> bids;
  };

  void split_gro(uint8_t* payload, uint32_t len, uint32_t seg, bool outer_verified, core::Be32 src,
                 uint32_t bid);
  void write_plain();
  void write_vnet();
  void send_time_exceeded(const encap::PacketRef& offender, const core::RouteSnapshot& routes);
  void recycle(uint32_t bid);  // hands a buffer back to the ring, counted for arm_recv
  void release(uint32_t bid);
  core::WorkerStats& stats() noexcept { return ctx_.stats; }

  WorkerContext& ctx_;
  BufRing& bufs_;
  const bool vnet_;  // TUN writes carry a virtio_net_hdr
  const bool gro_;   // UDP_GRO enabled on the socket
  msghdr recv_template_{};  // must outlive the armed multishot recvmsg
  // ICMP errors for remote senders, each a datagram of its own.
  static constexpr uint32_t kIcmpSlots = 16;
  struct IcmpSend {
    msghdr msg;
    iovec iov;
    sockaddr_in dst;
    std::array<uint8_t, encap::kIcmpUnreachMaxBytes> buf;
  };
  std::vector<IcmpSend> icmp_sends_;
  std::vector<uint32_t> icmp_free_;
  bool armed_ = false;
  bool starved_ = false;              // the last receive ended with ENOBUFS
  uint32_t recycled_this_turn_ = 0;
  uint32_t held_ = 0;                 // buffers referenced by TUN writes in flight

  // The batch collected from one loop turn's receives.
  std::vector<encap::DecapInput> in_;
  std::vector<uint16_t> in_bids_;
  std::vector<uint8_t> in_segs_;  // segment index inside its buffer
  std::vector<encap::DecapVerdict> verdicts_;
  // Segments of each UDP buffer still being written to the TUN.
  std::vector<uint16_t> refs_;

  // What passed the checks, in order, to write.
  std::vector<encap::PacketRef> write_pkts_;
  std::vector<uint16_t> write_bids_;
  std::vector<uint8_t> write_segs_;
  std::vector<encap::CoalescedRun> runs_;
  // TUN writes with a vnet header: a lone packet uses the iovec pair of its
  // (buffer, segment); a coalesced run takes a RunSlot.
  std::vector<std::array<iovec, 2>> single_iov_;
  std::vector<RunSlot> run_slots_;
  std::vector<uint32_t> run_free_;
};

}  // namespace udpring::io
