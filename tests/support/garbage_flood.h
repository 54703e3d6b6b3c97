#pragma once
// A flood of datagrams that no udpringd may forward, sent at a set rate to a
// daemon's UDP port: the input the daemon's receive path must count and drop
// while it carries good traffic beside it.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace udpring::test {

/// What the flood is made of, and where the inner packets that look valid
/// are aimed (a pod behind the flooded daemon, where a test listens).
struct GarbageFloodPlan {
  std::string ns;                 // namespace the flood is sent from
  std::string peer_ip;            // a known peer's public IP of the flooded node, in `ns`
  std::string stranger_ip;        // an address in `ns` that is no peer's public IP
  std::string dst_ip;             // the flooded daemon's public IP
  uint16_t dst_port = 8285;
  std::string victim_ip;          // a pod behind the daemon: inner destination of the forgeries
  uint16_t victim_port = 7777;
  std::string victim_node_subnet_ip;  // an address in the victim node's own lease (forged source)
  std::string relay_ip;           // an address outside the victim node's lease (relay target)
  double rate = 50000;            // datagrams per second, both sources together
  double seconds = 20;            // or until `stop` is set
  const std::atomic<bool>* stop = nullptr;
};

/// What was sent, by kind.
struct GarbageFloodResult {
  uint64_t sent = 0;        // datagrams the kernel took
  uint64_t send_errors = 0; // sends that failed (ENOBUFS, EAGAIN)
  double seconds = 0;       // how long the flood ran
  uint64_t by_kind[9] = {};
  static const char* kind_name(int k);
};

/// Sends the flood: random bytes, truncated and short IPv4 headers, IPv6,
/// headers whose length is longer than the datagram, oversized datagrams
/// (fragmented on the underlay), valid packets from a stranger, valid packets
/// with a forged inner source and packets to relay elsewhere, from a known
/// peer. None of it may reach `victim_ip`. Paced in batches of 64
/// (sendmmsg) so that the average rate is `rate`.
GarbageFloodResult garbage_flood(const GarbageFloodPlan& plan);

}  // namespace udpring::test
