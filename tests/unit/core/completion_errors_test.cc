// The one table that says what an error completion means to a worker.

#include "core/completion_errors.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "core/worker_stats.h"

namespace udpring::core {
namespace {

using Op = CompletionOp;
using C = ErrorClass;

TEST(CompletionErrors, ADeviceOrSocketThatIsGoneIsFatalOnEveryOp) {
  for (Op op : {Op::kTunRead, Op::kTunWrite, Op::kUdpRecv, Op::kUdpSend, Op::kIcmpWrite}) {
    for (int err : {EBADFD, ENODEV, ENXIO, EBADF}) {
      EXPECT_EQ(classify_completion_error(op, err), C::kFatal) << completion_op_name(op) << " " << err;
    }
  }
  // EIO: a TUN queue detached or down; on a send it is a refused GSO train.
  EXPECT_EQ(classify_completion_error(Op::kTunRead, EIO), C::kFatal);
  EXPECT_EQ(classify_completion_error(Op::kTunWrite, EIO), C::kFatal);
  EXPECT_EQ(classify_completion_error(Op::kUdpSend, EIO), C::kPacket);
}

TEST(CompletionErrors, ShortagesAreTransientNeverFatal) {
  for (Op op : {Op::kTunRead, Op::kTunWrite, Op::kUdpRecv, Op::kUdpSend, Op::kIcmpWrite}) {
    for (int err : {ENOBUFS, EAGAIN, ENOMEM, EINTR, ECANCELED}) {
      EXPECT_EQ(classify_completion_error(op, err), C::kTransient) << completion_op_name(op) << " " << err;
    }
  }
}

TEST(CompletionErrors, ADeadPeerNeverStopsAWorker) {
  for (int err : {ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN}) {
    EXPECT_EQ(classify_completion_error(Op::kUdpSend, err), C::kPeer) << err;
    EXPECT_EQ(classify_completion_error(Op::kUdpRecv, err), C::kPeer) << err;
  }
  // A packet refused by a firewall rule or too big: that packet only.
  EXPECT_EQ(classify_completion_error(Op::kUdpSend, EPERM), C::kPacket);
  EXPECT_EQ(classify_completion_error(Op::kUdpSend, EMSGSIZE), C::kPacket);
  EXPECT_EQ(classify_completion_error(Op::kTunWrite, EINVAL), C::kPacket);
  // An errno nobody expected on a read of the TUN: the device's, not a packet's.
  EXPECT_EQ(classify_completion_error(Op::kTunRead, EOVERFLOW), C::kFatal);
  EXPECT_EQ(classify_completion_error(Op::kUdpSend, EOVERFLOW), C::kPacket);
}

TEST(CompletionErrors, CountedByOpAndErrnoWithTheRestAsOther) {
  WorkerStats w;
  w.add_error(Op::kTunRead, EBADFD);
  w.add_error(Op::kTunRead, EBADFD);
  w.add_error(Op::kUdpSend, ECONNREFUSED);
  w.add_error(Op::kUdpSend, EOVERFLOW);
  const WorkerStats* all[] = {&w, &w};
  const StatsTotals t = sum_stats(all);
  EXPECT_EQ(t.errors_of(Op::kTunRead, errno_slot(EBADFD)), 4u);
  EXPECT_EQ(t.errors_of(Op::kUdpSend, errno_slot(ECONNREFUSED)), 2u);
  EXPECT_EQ(t.errors_of(Op::kUdpSend, kErrnoSlots - 1), 2u);
  EXPECT_EQ(t.errors_of(Op::kUdpRecv, errno_slot(EBADFD)), 0u);
  EXPECT_EQ(errno_slot_name(errno_slot(EOVERFLOW)), "other");
  EXPECT_EQ(errno_name(EBADFD), "EBADFD");
  EXPECT_EQ(errno_name(EOVERFLOW), "errno " + std::to_string(EOVERFLOW));
  const std::string line = format_stats(t);
  EXPECT_NE(line.find(" error_tun_read_EBADFD=4"), std::string::npos) << line;
  EXPECT_NE(line.find(" error_udp_send_other=2"), std::string::npos) << line;
  EXPECT_EQ(line.find("error_udp_recv"), std::string::npos) << line;
}

}  // namespace
}  // namespace udpring::core
