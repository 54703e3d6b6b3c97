#include "io/flow_steering.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <iterator>
#include <cerrno>

namespace udpring::io {
namespace {

// Offsets into the inner IPv4 header (the program sees the UDP payload).
constexpr uint32_t kVersionIhl = 0, kFragment = 6, kProtocol = 9, kSrc = 12, kDst = 16;
constexpr uint32_t kFragmentBits = 0x3fff;  // MF flag | fragment offset
constexpr uint8_t kTcp = 6, kUdp = 17;

uint32_t load32(std::span<const uint8_t> p, size_t off) {
  return uint32_t{p[off]} << 24 | uint32_t{p[off + 1]} << 16 | uint32_t{p[off + 2]} << 8 | p[off + 3];
}

// What instructions 23-26 of the program do: mix the flow word so that every
// bit of the addresses and ports reaches the low bits the modulo keeps (Linux
// gives connect() even ports, so the lowest bit alone would never change).
// Ports enter as sport ^ dport, addresses as src ^ dst: the same in both
// directions of a flow.
constexpr uint32_t kGolden = 0x9e3779b1;  // 2^32 / phi, a multiplicative hash
uint32_t mix(uint32_t a) {
  a *= kGolden;
  return a ^ (a >> 16);
}

}  // namespace

uint32_t flow_steering_index(std::span<const uint8_t> inner, uint32_t n_sockets) {
  // A classic BPF load past the end of the packet ends the program with 0.
  const auto has = [&](size_t end) { return inner.size() >= end; };
  if (n_sockets == 0) return kFlowSteeringNoChoice;
  if (!has(1)) return 0;
  if ((inner[kVersionIhl] & 0xf0) != 0x40) return kFlowSteeringNoChoice;
  if (!has(kFragment + 2)) return 0;
  uint32_t ports = 0;
  const bool fragment = ((inner[kFragment] << 8 | inner[kFragment + 1]) & kFragmentBits) != 0;
  if (!fragment) {
    if (!has(kProtocol + 1)) return 0;
    if (inner[kProtocol] == kTcp || inner[kProtocol] == kUdp) {
      const size_t l4 = size_t{inner[kVersionIhl] & 0x0fu} * 4;
      if (!has(l4 + 4)) return 0;
      const uint32_t w = load32(inner, l4);
      ports = (w ^ (w >> 16)) & 0xffff;
    }
  }
  if (!has(kDst + 4)) return 0;
  return mix(load32(inner, kSrc) ^ load32(inner, kDst) ^ ports) % n_sockets;
}

int attach_flow_steering(int fd, uint32_t n_sockets) {
  if (n_sockets == 0) return EINVAL;
  // Jump offsets count from the next instruction; the numbers in the
  // comments are instruction indices.
  constexpr uint8_t kPorts = 8, kAddrOnly = 15, kCombine = 16, kNotIpv4 = 29;
  sock_filter prog[] = {
      /*  0 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, kVersionIhl),
      /*  1 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xf0),
      /*  2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x40, 0, kNotIpv4 - 3),
      /*  3 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, kFragment),
      /*  4 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, kFragmentBits, kAddrOnly - 5, 0),
      /*  5 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, kProtocol),
      /*  6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kTcp, kPorts - 7, 0),
      /*  7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kUdp, kPorts - 8, kAddrOnly - 8),
      /*  8 */ BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, kVersionIhl),  // X = IHL * 4
      /*  9 */ BPF_STMT(BPF_LD | BPF_W | BPF_IND, 0),             // A = sport << 16 | dport
      /* 10 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
      /* 11 */ BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
      /* 12 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      /* 13 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xffff),     // A = sport ^ dport
      /* 14 */ BPF_STMT(BPF_JMP | BPF_JA, kCombine - 15),
      /* 15 */ BPF_STMT(BPF_LD | BPF_IMM, 0),                   // fragments: no ports
      /* 16 */ BPF_STMT(BPF_ST, 0),                             // M[0] = ports
      /* 17 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kSrc),
      /* 18 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
      /* 19 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kDst),
      /* 20 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      /* 21 */ BPF_STMT(BPF_LDX | BPF_W | BPF_MEM, 0),
      /* 22 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),          // A = src ^ dst ^ ports
      /* 23 */ BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, kGolden),      // mix()
      /* 24 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
      /* 25 */ BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
      /* 26 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
      /* 27 */ BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n_sockets),
      /* 28 */ BPF_STMT(BPF_RET | BPF_A, 0),
      /* 29 */ BPF_STMT(BPF_RET | BPF_K, kFlowSteeringNoChoice),
  };
  sock_fprog fprog{static_cast<unsigned short>(std::size(prog)), prog};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof fprog) < 0) return errno;
  return 0;
}

}  // namespace udpring::io
