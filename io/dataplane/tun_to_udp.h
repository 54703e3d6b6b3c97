#pragma once
// TUN -> UDP, one worker's half: reads packets from its TUN queue into
// provided buffers, classifies them in batches (encap/udp_encap.h) and sends
// each from the very buffer it was read into, grouped per peer into UDP GSO
// trains. TSO super-packets (with TUN offload) are cut into segments whose
// headers are rebuilt and whose payloads stay in place.
//
// Owns the send slots and the per-buffer reference counts: a TUN buffer
// goes back to the kernel when the last send that reads from it completes.

#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <vector>

#include "encap/gso_split.h"
#include "encap/gso_train.h"
#include "encap/icmp.h"
#include "encap/packet_ref.h"
#include "encap/udp_encap.h"
#include "encap/vnet_hdr.h"
#include "io/dataplane/page_array.h"
#include "io/dataplane/worker_context.h"

namespace udpring::io {

class TunToUdp {
 public:
  /// `send_file` is the fixed file to send from (kUdpFile or kSendFile).
  /// `gso`, `zc`, `multishot`: what the kernel granted (worker setup).
  TunToUdp(WorkerContext& ctx, BufRing& bufs, int send_file, bool gso, bool zc, bool multishot);

  /// Keeps the wanted reads armed: one multishot read, or a few plain ones.
  void arm_reads();
  /// Start of a loop turn.
  void begin_turn() noexcept { recycled_this_turn_ = 0; }
  /// End of a loop turn, after the completions: sends what the turn read.
  void flush();
  /// After the buffer ring was committed: re-arms the reads when a buffer
  /// can be had again.
  void rearm();

  void on_read(const io_uring_cqe* cqe);
  void on_send(const io_uring_cqe* cqe, uint32_t slot);
  void on_send_segment(const io_uring_cqe* cqe, uint32_t index);
  void on_icmp_write(const io_uring_cqe* cqe, uint32_t slot);

  bool gso() const noexcept { return gso_; }
  bool zc() const noexcept { return zc_; }

  /// Bytes of the tables the constructor allocates for these options (the
  /// ones that grow with the buffer count), for the memory plan.
  static size_t table_bytes(const WorkerOptions& o);
  bool multishot() const noexcept { return multishot_; }

 private:
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
    std::array<iovec, 2 * encap::kMaxGsoSegments> iov;
    std::array<uint16_t, encap::kMaxGsoSegments> bids;
  };
  // With GSO off, each TSO segment is its own sendmsg. Its msghdr lives with
  // the segment, [bid * kMaxTsoSegments + k], as long as the buffer is held,
  // so a read of up to kMaxTsoSegments segments takes no send slots (a
  // 4-stream run with --no-gso ran the slots dry and dropped 1.2 %).
  struct SegmentSend {
    msghdr msg;
    sockaddr_in dst;
    std::array<iovec, 2> iov;
  };
  static constexpr uint32_t kMaxTsoSegments = encap::kMaxTsoSegments;
  static constexpr uint32_t kIcmpSlots = 64;
  // ICMP replies are new bytes (not forwarded payload) and need a home while
  // their TUN write is in flight; a zero vnet header leads when the TUN has one.
  static constexpr size_t kIcmpSlotBytes = encap::kVnetHdrBytes + encap::kIcmpUnreachMaxBytes;

  void flush_batch();
  void send_tso(uint32_t bid, uint8_t* pkt, uint32_t len, uint16_t gso_size, bool udp);
  void send_segment(uint32_t bid, uint32_t k, const core::NextHop& hop);
  void submit_train();
  SendSlot* take_send_slot();
  void submit_send(SendSlot& sl, uint32_t datagrams, uint32_t niov, uint32_t seg);
  void count_send(int res, uint32_t datagrams);
  void finish_send(uint32_t slot);
  void resend_singly(const SendSlot& train);
  void resend_copied(const SendSlot& train);
  void send_icmp(encap::IcmpError kind, const encap::PacketRef& offender, uint16_t next_hop_mtu = 0);
  void drop(size_t i);
  void recycle(uint32_t bid);
  void release(uint32_t bid);
  core::WorkerStats& stats() noexcept { return ctx_.stats; }

  WorkerContext& ctx_;
  BufRing& bufs_;
  const int send_file_;
  const bool vnet_;       // TUN reads carry a virtio_net_hdr
  bool gso_;              // UDP_SEGMENT sends; cleared for good on EIO
  bool zc_;               // SENDMSG_ZC for trains; cleared for good on EMSGSIZE
  const bool multishot_;  // one READ_MULTISHOT instead of plain reads

  std::vector<SendSlot> send_slots_;
  std::vector<uint32_t> send_free_;
  std::vector<uint16_t> refs_;  // per TUN buffer: sends (and splits) still reading it
  // The GSO train of TSO segments being filled (see submit_train).
  SendSlot* train_ = nullptr;
  encap::OpenTrain open_;

  // TSO split output: per TUN buffer, a header slot per segment.
  // Resident only where used: the split headers of a buffer reach as far as
  // its read had segments, and the segment sends only exist with GSO off.
  PageArray<uint8_t> tso_hdrs_;
  PageArray<SegmentSend> segment_sends_;
  std::array<iovec, 2 * kMaxTsoSegments> tso_iov_;

  std::vector<std::array<uint8_t, kIcmpSlotBytes>> icmp_bufs_;
  std::vector<uint32_t> icmp_free_;
  std::vector<encap::IcmpError> icmp_kind_;  // per slot: what it carries, for the counters

  // The batch collected from one loop turn's reads.
  std::vector<encap::PacketRef> pkts_;
  std::vector<uint16_t> bids_;
  std::vector<encap::EncapResult> results_;
  std::vector<encap::GsoTrain> trains_;

  int reads_armed_ = 0;
  bool starved_ = false;  // the last read ended with a transient error (ENOBUFS)
  uint32_t recycled_this_turn_ = 0;
  uint32_t in_flight_ = 0;  // TUN buffers referenced by sends in flight
};

}  // namespace udpring::io
