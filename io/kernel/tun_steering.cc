#include "io/kernel/tun_steering.h"

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

static_assert(BPF_ANY == 0 && BPF_NOEXIST == 1, "the program computes the update flag");

namespace udpring::io {
namespace {

int bpf(int cmd, bpf_attr& attr) {
  return static_cast<int>(syscall(__NR_bpf, cmd, &attr, sizeof attr));
}

[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

core::UniqueFd create_map(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t entries,
                          const char* name) {
  bpf_attr attr{};
  attr.map_type = type;
  attr.key_size = key_size;
  attr.value_size = value_size;
  attr.max_entries = entries;
  std::strncpy(attr.map_name, name, sizeof attr.map_name - 1);
  core::UniqueFd fd(bpf(BPF_MAP_CREATE, attr));
  if (!fd) fail(std::string("creating the TUN steering map ") + name);
  return fd;
}

// A hand-assembled program: jumps name labels, resolved into offsets at the
// end, so that inserting an instruction cannot silently break a branch.
class Assembler {
 public:
  using Label = int;

  Label label() {
    targets_.push_back(-1);
    return static_cast<Label>(targets_.size() - 1);
  }
  void bind(Label l) { targets_[static_cast<size_t>(l)] = static_cast<int>(code_.size()); }

  void emit(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    bpf_insn insn{};
    insn.code = code;
    insn.dst_reg = dst & 0xf;
    insn.src_reg = src & 0xf;
    insn.off = off;
    insn.imm = imm;
    code_.push_back(insn);
  }
  void jump(uint8_t op, uint8_t dst, int32_t imm, Label to) {
    fixups_.push_back({code_.size(), to});
    emit(BPF_JMP | op | BPF_K, dst, 0, 0, imm);
  }
  // The two-slot load of a map's address, by fd.
  void load_map(uint8_t dst, int map_fd) {
    emit(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, map_fd);
    emit(0, 0, 0, 0, 0);
  }

  std::vector<bpf_insn> finish() {
    for (const Fixup& f : fixups_) {
      const int target = targets_[static_cast<size_t>(f.label)];
      code_[f.at].off = static_cast<int16_t>(target - static_cast<int>(f.at) - 1);
    }
    return code_;
  }

 private:
  struct Fixup {
    size_t at;
    Label label;
  };
  std::vector<bpf_insn> code_;
  std::vector<int> targets_;
  std::vector<Fixup> fixups_;
};

constexpr uint8_t R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R6 = 6, R7 = 7, R8 = 8, R9 = 9, R10 = 10;

// The flow key on the stack: saddr, daddr, ports, protocol, each a u32 as
// the packet loads give them (host order), 16 bytes with no padding to
// leave uninitialised.
constexpr int16_t kKey = -16;
constexpr int16_t kZero = -20;   // key 0 of the counter array
constexpr int16_t kValue = -24;  // the number stored for a new flow

std::vector<bpf_insn> assemble(int flows_fd, int counter_fd) {
  Assembler a;
  const auto ret0 = a.label(), by_addresses = a.label(), by_flow = a.label(), place = a.label(),
             return_r9 = a.label();
  // r6 = skb: the packet loads (LD_ABS/LD_IND) read through r6 and leave
  // r1-r5 clobbered, like helper calls; r6-r9 survive both. A load past the
  // end of the packet ends the program with 0, queue 0.
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R6, R1, 0, 0);
  a.emit(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, 0);  // version and IHL
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R7, R0, 0, 0);
  a.emit(BPF_ALU64 | BPF_AND | BPF_K, R7, 0, 0, 0x0f);
  a.emit(BPF_ALU64 | BPF_LSH | BPF_K, R7, 0, 0, 2);  // r7 = header length
  a.emit(BPF_ALU64 | BPF_RSH | BPF_K, R0, 0, 0, 4);
  a.jump(BPF_JNE, R0, 4, ret0);  // not IPv4: the daemon drops it anyway
  a.jump(BPF_JLT, R7, 20, ret0);
  a.emit(BPF_LD | BPF_ABS | BPF_H, 0, 0, 0, 6);  // flags and fragment offset
  a.emit(BPF_ALU64 | BPF_AND | BPF_K, R0, 0, 0, 0x3fff);
  a.jump(BPF_JNE, R0, 0, by_addresses);  // a fragment: no ports in most of them
  a.emit(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, 9);  // protocol
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R8, R0, 0, 0);
  a.jump(BPF_JEQ, R8, IPPROTO_TCP, by_flow);
  a.jump(BPF_JNE, R8, IPPROTO_UDP, by_addresses);

  a.bind(by_flow);
  a.emit(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 12);  // source address
  a.emit(BPF_STX | BPF_MEM | BPF_W, R10, R0, kKey, 0);
  a.emit(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 16);  // destination address
  a.emit(BPF_STX | BPF_MEM | BPF_W, R10, R0, kKey + 4, 0);
  a.emit(BPF_LD | BPF_IND | BPF_W, 0, R7, 0, 0);  // both ports, past the options
  a.emit(BPF_STX | BPF_MEM | BPF_W, R10, R0, kKey + 8, 0);
  a.emit(BPF_STX | BPF_MEM | BPF_W, R10, R8, kKey + 12, 0);
  // A SYN (a connection's first packet either way) takes the next number
  // even when its 4-tuple is remembered from an earlier connection, so
  // connections that reuse ports still take turns. From here on r8 is the
  // SYN bit: 2 for a SYN, else 0.
  const auto tcp_flags = a.label(), lookup = a.label();
  a.jump(BPF_JEQ, R8, IPPROTO_TCP, tcp_flags);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_K, R8, 0, 0, 0);
  a.jump(BPF_JA, 0, 0, lookup);
  a.bind(tcp_flags);
  a.emit(BPF_LD | BPF_IND | BPF_B, 0, R7, 0, 13);  // TCP flags
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R8, R0, 0, 0);
  a.emit(BPF_ALU64 | BPF_AND | BPF_K, R8, 0, 0, 0x02);
  a.jump(BPF_JNE, R8, 0, place);
  a.bind(lookup);
  a.load_map(R1, flows_fd);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R2, R10, 0, 0);
  a.emit(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, kKey);
  a.emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
  a.jump(BPF_JEQ, R0, 0, place);
  a.emit(BPF_LDX | BPF_MEM | BPF_W, R0, R0, 0, 0);  // a known flow: its number
  a.emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

  // A new flow takes the next number. Two CPUs may both miss on one flow's
  // first packets: BPF_NOEXIST keeps the first store, and both return what
  // the map then holds, so the flow still has one queue. A SYN stores with
  // BPF_ANY instead, replacing an earlier connection's number.
  a.bind(place);
  a.emit(BPF_ST | BPF_MEM | BPF_W, R10, 0, kZero, 0);
  a.load_map(R1, counter_fd);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R2, R10, 0, 0);
  a.emit(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, kZero);
  a.emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
  a.jump(BPF_JEQ, R0, 0, by_addresses);  // cannot happen: an array's key 0 exists
  a.emit(BPF_ALU64 | BPF_MOV | BPF_K, R9, 0, 0, 1);
  a.emit(BPF_STX | BPF_ATOMIC | BPF_DW, R0, R9, 0, BPF_ADD | BPF_FETCH);  // r9 = old count
  a.emit(BPF_ALU | BPF_MOV | BPF_X, R9, R9, 0, 0);  // its low 32 bits
  a.emit(BPF_STX | BPF_MEM | BPF_W, R10, R9, kValue, 0);
  a.load_map(R1, flows_fd);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R2, R10, 0, 0);
  a.emit(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, kKey);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R3, R10, 0, 0);
  a.emit(BPF_ALU64 | BPF_ADD | BPF_K, R3, 0, 0, kValue);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R4, R8, 0, 0);
  a.emit(BPF_ALU64 | BPF_RSH | BPF_K, R4, 0, 0, 1);
  a.emit(BPF_ALU64 | BPF_XOR | BPF_K, R4, 0, 0, 1);  // SYN: BPF_ANY (0), else BPF_NOEXIST (1)
  a.emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_update_elem);
  a.load_map(R1, flows_fd);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R2, R10, 0, 0);
  a.emit(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, kKey);
  a.emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
  a.jump(BPF_JEQ, R0, 0, return_r9);  // evicted at once by a full LRU
  a.emit(BPF_LDX | BPF_MEM | BPF_W, R0, R0, 0, 0);
  a.emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
  a.bind(return_r9);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R0, R9, 0, 0);
  a.emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

  // saddr ^ daddr, mixed so that its low bits (the TUN takes it mod the
  // queue count) depend on every bit.
  a.bind(by_addresses);
  a.emit(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 12);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_X, R7, R0, 0, 0);
  a.emit(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 16);
  a.emit(BPF_ALU | BPF_XOR | BPF_X, R0, R7, 0, 0);
  for (int round = 0; round < 2; ++round) {
    a.emit(BPF_ALU | BPF_MOV | BPF_X, R1, R0, 0, 0);
    a.emit(BPF_ALU | BPF_RSH | BPF_K, R1, 0, 0, 16);
    a.emit(BPF_ALU | BPF_XOR | BPF_X, R0, R1, 0, 0);
    if (round == 0) a.emit(BPF_ALU | BPF_MUL | BPF_K, R0, 0, 0, 0x45d9f3b);
  }
  a.emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

  a.bind(ret0);
  a.emit(BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, 0);
  a.emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
  return a.finish();
}

// The verifier's verdict is its log's last non-empty line.
std::string last_line(const char* log) {
  std::string s(log);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

}  // namespace

TunSteering::TunSteering()
    : flows_(create_map(BPF_MAP_TYPE_LRU_HASH, 16, 4, kMaxFlows, "udpring_flows")),
      counter_(create_map(BPF_MAP_TYPE_ARRAY, 4, 8, 1, "udpring_turn")) {
  const std::vector<bpf_insn> code = assemble(flows_.get(), counter_.get());
  static constexpr char kLicense[] = "Dual MIT/GPL";
  std::array<char, 16384> log{};
  bpf_attr attr{};
  attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  attr.insns = reinterpret_cast<uintptr_t>(code.data());
  attr.insn_cnt = static_cast<uint32_t>(code.size());
  attr.license = reinterpret_cast<uintptr_t>(kLicense);
  std::strncpy(attr.prog_name, "udpring_steer", sizeof attr.prog_name - 1);
  prog_ = core::UniqueFd(bpf(BPF_PROG_LOAD, attr));
  if (prog_) return;
  const int err = errno;
  // Load again with the log on to say why; the first try keeps it off, as a
  // log the kernel cannot fit fails the load with ENOSPC.
  attr.log_buf = reinterpret_cast<uintptr_t>(log.data());
  attr.log_size = log.size();
  attr.log_level = 1;
  prog_ = core::UniqueFd(bpf(BPF_PROG_LOAD, attr));
  std::string why = "loading the TUN steering program";
  if (log[0] != '\0') why += " (verifier: " + last_line(log.data()) + ")";
  errno = err;
  fail(why);
}

int TunSteering::attach(int tun_fd) const {
  int fd = prog_.get();
  return ioctl(tun_fd, TUNSETSTEERINGEBPF, &fd) < 0 ? errno : 0;
}

uint64_t TunSteering::flows_placed() const {
  uint32_t key = 0;
  uint64_t value = 0;
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(counter_.get());
  attr.key = reinterpret_cast<uintptr_t>(&key);
  attr.value = reinterpret_cast<uintptr_t>(&value);
  return bpf(BPF_MAP_LOOKUP_ELEM, attr) == 0 ? value : 0;
}

uint32_t TunSteering::run_on(std::span<const uint8_t> ipv4_packet) const {
  // The test run takes an Ethernet frame and strips the header, as the
  // program would see a TUN's packet: from the IPv4 header on.
  std::vector<uint8_t> frame(ETH_HLEN, 0);
  frame[12] = ETH_P_IP >> 8;
  frame[13] = ETH_P_IP & 0xff;
  frame.insert(frame.end(), ipv4_packet.begin(), ipv4_packet.end());
  bpf_attr attr{};
  attr.test.prog_fd = static_cast<uint32_t>(prog_.get());
  attr.test.data_in = reinterpret_cast<uintptr_t>(frame.data());
  attr.test.data_size_in = static_cast<uint32_t>(frame.size());
  attr.test.repeat = 1;
  if (bpf(BPF_PROG_TEST_RUN, attr) < 0) fail("running the TUN steering program");
  return attr.test.retval;
}

}  // namespace udpring::io
