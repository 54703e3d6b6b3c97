// The TUN steering program (TUNSETSTEERINGEBPF): the kernel runs it for
// every packet it sends into the TUN, from the IPv4 header on, and takes the
// number it returns mod the queue count. tun_steering.h says what it is for.

#include <linux/bpf.h>
#include <linux/in.h>

#include <bpf/bpf_helpers.h>

// The classic packet loads (LD_ABS / LD_IND): a socket filter may not read
// the packet directly, and these give the value in host order and end the
// program with 0, queue 0, when the packet is too short, so a truncated
// header needs no check of its own.
unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");
unsigned long long load_word(void *skb, unsigned long long off) asm("llvm.bpf.load.word");

// Four u32s with no padding, so no byte of a key on the stack is left
// uninitialised for the verifier to refuse or the hash to see.
struct flow {
  __u32 saddr;
  __u32 daddr;
  __u32 ports;  // source and destination port, as one load gives them
  __u32 protocol;
};

// Flow -> its number in turn. LRU, so that a full map forgets the flows that
// stopped rather than refusing new ones. Its size is TunSteering::kMaxFlows,
// set by the loader.
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __type(key, struct flow);
  __type(value, __u32);
} udpring_flows SEC(".maps");

// The next number in turn; 64 bits so that the daemon's count of flows
// placed does not wrap.
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} udpring_turn SEC(".maps");

// Fragments carry no ports past the first, and all fragments of a datagram
// must leave on one queue, so they (and protocols without ports) go by
// saddr ^ daddr, mixed so that its low bits depend on every bit.
static __always_inline __u32 by_addresses(struct __sk_buff *skb) {
  __u32 h = (__u32)load_word(skb, 12) ^ (__u32)load_word(skb, 16);
  h ^= h >> 16;
  h *= 0x45d9f3b;
  h ^= h >> 16;
  return h;
}

SEC("socket")
int udpring_steer(struct __sk_buff *skb) {
  const __u32 version_ihl = load_byte(skb, 0);
  const __u32 ihl = (version_ihl & 0x0f) << 2;
  // Not IPv4 (the daemon drops it anyway) or a header shorter than the
  // minimum: queue 0.
  if (version_ihl >> 4 != 4 || ihl < 20) return 0;
  if (load_half(skb, 6) & 0x3fff) return by_addresses(skb);  // MF or an offset
  const __u32 protocol = load_byte(skb, 9);
  if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP) return by_addresses(skb);

  struct flow key = {
      .saddr = load_word(skb, 12),
      .daddr = load_word(skb, 16),
      .ports = load_word(skb, ihl),  // past the options
      .protocol = protocol,
  };
  // A SYN (a connection's first packet either way) takes the next number
  // even when its 4-tuple is remembered from an earlier connection, so
  // connections that reuse ports still take turns.
  const int syn = protocol == IPPROTO_TCP && (load_byte(skb, ihl + 13) & 0x02);
  if (!syn) {
    const __u32 *known = bpf_map_lookup_elem(&udpring_flows, &key);
    if (known) return *known;
  }

  const __u32 zero = 0;
  __u64 *turn = bpf_map_lookup_elem(&udpring_turn, &zero);
  if (!turn) return by_addresses(skb);  // cannot happen: an array's key 0 exists
  const __u32 number = __sync_fetch_and_add(turn, 1);
  // Two CPUs may both miss on one flow's first packets: BPF_NOEXIST keeps
  // the first store, and both return what the map then holds, so the flow
  // still has one queue. A SYN replaces an earlier connection's number.
  bpf_map_update_elem(&udpring_flows, &key, &number, syn ? BPF_ANY : BPF_NOEXIST);
  const __u32 *placed = bpf_map_lookup_elem(&udpring_flows, &key);
  return placed ? *placed : number;  // a full LRU may evict it at once
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
