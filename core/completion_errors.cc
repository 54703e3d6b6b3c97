#include "core/completion_errors.h"

#include <cerrno>

namespace udpring::core {

// The numbers in kCountedErrnos are Linux's on every architecture udpring
// builds for (x86-64, arm64); this checks them against the headers.
static_assert(kCountedErrnos[0] == EAGAIN && kCountedErrnos[1] == EINTR && kCountedErrnos[2] == ENOBUFS &&
              kCountedErrnos[3] == ENOMEM && kCountedErrnos[4] == ECANCELED &&
              kCountedErrnos[5] == ECONNREFUSED && kCountedErrnos[6] == EHOSTUNREACH &&
              kCountedErrnos[7] == ENETUNREACH && kCountedErrnos[8] == ENETDOWN &&
              kCountedErrnos[9] == EHOSTDOWN && kCountedErrnos[10] == EPERM &&
              kCountedErrnos[11] == EACCES && kCountedErrnos[12] == EMSGSIZE &&
              kCountedErrnos[13] == EINVAL && kCountedErrnos[14] == EIO && kCountedErrnos[15] == EBADFD &&
              kCountedErrnos[16] == ENODEV && kCountedErrnos[17] == ENXIO && kCountedErrnos[18] == EBADF);

namespace {

constexpr std::array<std::string_view, kErrnoSlots> kSlotNames = {
    "EAGAIN", "EINTR",  "ENOBUFS", "ENOMEM", "ECANCELED", "ECONNREFUSED", "EHOSTUNREACH",
    "ENETUNREACH", "ENETDOWN", "EHOSTDOWN", "EPERM", "EACCES", "EMSGSIZE", "EINVAL",
    "EIO", "EBADFD", "ENODEV", "ENXIO", "EBADF", "other"};

bool transient(int err) {
  return err == EAGAIN || err == EINTR || err == ENOBUFS || err == ENOMEM || err == ECANCELED;
}

// The device or the socket is gone or broken: nothing queued to it later
// can succeed.
bool broken_file(int err) {
  return err == EBADFD || err == ENODEV || err == ENXIO || err == EBADF || err == ENOTSOCK ||
         err == EFAULT;
}

bool peer_unreachable(int err) {
  return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EHOSTDOWN ||
         err == ENETDOWN || err == ENONET || err == ETIMEDOUT;
}

}  // namespace

ErrorClass classify_completion_error(CompletionOp op, int err) noexcept {
  if (transient(err)) return ErrorClass::kTransient;
  if (broken_file(err)) return ErrorClass::kFatal;
  switch (op) {
    case CompletionOp::kTunRead:
      // A read takes no packet of ours that could be at fault: any other
      // error (EIO from a detached queue among them) is the device's.
      return ErrorClass::kFatal;
    case CompletionOp::kTunWrite:
    case CompletionOp::kIcmpWrite:
      // EINVAL, EMSGSIZE, EPERM: this packet (a bad virtio header, too big).
      return err == EIO ? ErrorClass::kFatal : ErrorClass::kPacket;
    case CompletionOp::kUdpRecv:
      // With IP_RECVERR (or a connected socket) an ICMP error from a peer
      // ends the receive: the socket is fine.
      return peer_unreachable(err) ? ErrorClass::kPeer : ErrorClass::kPacket;
    case CompletionOp::kUdpSend:
      // EIO here is a GSO send the device refused, resent singly by the caller.
      return peer_unreachable(err) ? ErrorClass::kPeer : ErrorClass::kPacket;
    case CompletionOp::kCount:
      break;
  }
  return ErrorClass::kPacket;
}

size_t errno_slot(int err) noexcept {
  for (size_t i = 0; i < kCountedErrnos.size(); ++i) {
    if (kCountedErrnos[i] == err) return i;
  }
  return kErrnoSlots - 1;
}

std::string_view errno_slot_name(size_t slot) noexcept {
  return slot < kErrnoSlots ? kSlotNames[slot] : kSlotNames[kErrnoSlots - 1];
}

std::string errno_name(int err) {
  const size_t slot = errno_slot(err);
  if (slot + 1 < kErrnoSlots) return std::string(kSlotNames[slot]);
  return "errno " + std::to_string(err);
}

std::string_view completion_op_name(CompletionOp op) noexcept {
  switch (op) {
    case CompletionOp::kTunRead: return "tun_read";
    case CompletionOp::kTunWrite: return "tun_write";
    case CompletionOp::kUdpRecv: return "udp_recv";
    case CompletionOp::kUdpSend: return "udp_send";
    case CompletionOp::kIcmpWrite: return "icmp_write";
    case CompletionOp::kCount: break;
  }
  return "unknown";
}

std::string_view error_class_name(ErrorClass c) noexcept {
  switch (c) {
    case ErrorClass::kTransient: return "transient";
    case ErrorClass::kPeer: return "peer";
    case ErrorClass::kPacket: return "packet";
    case ErrorClass::kFatal: return "fatal";
  }
  return "unknown";
}

}  // namespace udpring::core
