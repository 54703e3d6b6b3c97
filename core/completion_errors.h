#pragma once
// Every io_uring completion that carries an error goes through one table:
// which request it ended (the op), what its errno means for the worker (the
// class), and a counter per op and errno. A worker never decides what an
// errno means anywhere else.
//
//   transient  the kernel is short of something for a moment (ENOBUFS,
//              EAGAIN, ENOMEM, EINTR) or the request was cancelled: count,
//              and re-arm only once something changed (a buffer came back).
//   peer       the far end or the path to it (ECONNREFUSED from an ICMP
//              port unreachable, EHOSTUNREACH, ENETUNREACH...): count; the
//              datagram is lost, the worker goes on.
//   packet     this one packet was refused (EMSGSIZE, EINVAL, EPERM from a
//              firewall rule...): count it as a drop and go on.
//   fatal      the device or socket itself is gone or broken (EBADFD after
//              `ip link del`, EIO, ENODEV, ENXIO, EBADF): the worker stops
//              and the daemon exits non-zero, so that systemd or kubelet
//              restarts it; re-arming would only spin.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace udpring::core {

enum class CompletionOp : uint8_t { kTunRead, kTunWrite, kUdpRecv, kUdpSend, kIcmpWrite, kCount };
inline constexpr size_t kCompletionOps = static_cast<size_t>(CompletionOp::kCount);

enum class ErrorClass : uint8_t { kTransient, kPeer, kPacket, kFatal };

/// What `err` (a positive errno) ending an `op` request means.
ErrorClass classify_completion_error(CompletionOp op, int err) noexcept;

/// The errnos counted one by one; any other is counted as "other".
inline constexpr std::array<int, 19> kCountedErrnos = {
    11 /*EAGAIN*/,     4 /*EINTR*/,       105 /*ENOBUFS*/,  12 /*ENOMEM*/,   125 /*ECANCELED*/,
    111 /*ECONNREFUSED*/, 113 /*EHOSTUNREACH*/, 101 /*ENETUNREACH*/, 100 /*ENETDOWN*/,
    112 /*EHOSTDOWN*/, 1 /*EPERM*/,       13 /*EACCES*/,    90 /*EMSGSIZE*/, 22 /*EINVAL*/,
    5 /*EIO*/,         77 /*EBADFD*/,     19 /*ENODEV*/,    6 /*ENXIO*/,     9 /*EBADF*/};
inline constexpr size_t kErrnoSlots = kCountedErrnos.size() + 1;  // + "other"

/// The counter slot of `err`: its index in kCountedErrnos, or the last slot.
size_t errno_slot(int err) noexcept;
/// "EAGAIN", ..., "other" for a slot.
std::string_view errno_slot_name(size_t slot) noexcept;
/// "EBADFD", or "errno 1234" for one not counted by name.
std::string errno_name(int err);

std::string_view completion_op_name(CompletionOp op) noexcept;  // "tun_read", ...
std::string_view error_class_name(ErrorClass c) noexcept;       // "transient", ...

}  // namespace udpring::core
