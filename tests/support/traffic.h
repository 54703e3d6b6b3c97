#pragma once
// Real traffic between test namespaces: verified TCP transfers, single UDP
// datagrams, and packet capture with AF_PACKET.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace udpring::test {

/// Byte `i` of the deterministic stream used by verified transfers.
inline uint8_t pattern_byte(uint64_t i) {
  return static_cast<uint8_t>(((i * 2654435761u) >> 13) ^ (i >> 20));
}

/// Sends `bytes` over TCP from `client_ns` to a listener in `server_ns` on
/// server_ip:port and checks every byte at the receiver. Returns the number
/// of bytes received that matched; throws std::runtime_error naming the first
/// mismatching offset or a timeout. `mss` > 0 caps the client's segment
/// size (TCP_MAXSEG) before it connects.
uint64_t tcp_transfer_verified(const std::string& server_ns, const std::string& server_ip,
                               uint16_t port, const std::string& client_ns, uint64_t bytes,
                               int mss = 0);

/// `connections` verified transfers of `bytes`, one after another, from pod
/// A (a_ns, a_ip) to pod B, then as many from B to A, on ports from
/// `first_port` up; returns the bytes verified. The steering programs give
/// each new flow the next worker, so with `connections` >= the workers every
/// worker of both nodes carries traffic each way (both ways at once would
/// start the two ways' flows in pairs, and with two workers put each way on
/// one). It is how a test touches every worker's buffers.
uint64_t tcp_each_way_in_turn(const std::string& a_ns, const std::string& a_ip, const std::string& b_ns,
                              const std::string& b_ip, int connections, uint16_t first_port,
                              uint64_t bytes);

struct UdpSendOptions {
  int ttl = 64;
  bool dont_fragment = true;
};

/// Sends `payload` from `client_ns` to server_ip:port where a socket in
/// `server_ns` waits up to `timeout_ms`; returns what it received, if anything.
std::optional<std::vector<uint8_t>> udp_exchange(const std::string& server_ns,
                                                 const std::string& server_ip, uint16_t port,
                                                 const std::string& client_ns,
                                                 const std::vector<uint8_t>& payload,
                                                 const UdpSendOptions& opts = {},
                                                 int timeout_ms = 2000);

/// Binds a UDP socket to ip:port inside `ns`, runs `action` (which sends
/// something that may or may not arrive) and returns the first datagram
/// that arrives within `timeout_ms` after it returns, if any.
std::optional<std::vector<uint8_t>> udp_receive_during(const std::string& ns, const std::string& ip,
                                                       uint16_t port,
                                                       const std::function<void()>& action,
                                                       int timeout_ms = 1000);

/// Sends `count` datagrams of `size` bytes (datagram i filled with
/// pattern_byte(i * size + j)) from `client_ns` to server_ip:port, as UDP GSO
/// sends of `gso_batch` datagrams each when gso_batch > 1. Returns how many
/// arrived intact at a socket in `server_ns` (with a 4 MiB receive buffer)
/// within `timeout_ms` after the last send.
size_t udp_burst(const std::string& server_ns, const std::string& server_ip, uint16_t port,
                 const std::string& client_ns, size_t count, size_t size, size_t gso_batch,
                 int timeout_ms = 1000);

/// How udp_send_raw hands its datagrams to the kernel.
enum class RawSend {
  kSingly,            // one sendto each
  kSinglyNoChecksum,  // one sendto each, with UDP checksum 0 (SO_NO_CHECK)
  kOneGsoSend,        // one UDP_SEGMENT sendmsg (all but the last the same size)
};

/// Sends raw `datagrams` over UDP from `src_ip` (bound inside `ns`) to dst:port.
void udp_send_raw(const std::string& ns, const std::string& src_ip, const std::string& dst_ip,
                  uint16_t dst_port, const std::vector<std::vector<uint8_t>>& datagrams,
                  RawSend how = RawSend::kSingly);

/// GET http://127.0.0.1:port/path from inside `ns` ("" = this namespace);
/// returns the whole response (status line, headers, body), "" on failure.
std::string http_get(const std::string& ns, uint16_t port, const std::string& path);

/// A captured IPv4 packet (network layer, link header removed).
struct Captured {
  std::string ifname;
  bool outgoing = false;
  std::vector<uint8_t> bytes;
};

/// Captures IPv4 packets on `ifnames` in `ns` while `action` runs (plus
/// `linger_ms` after it), with AF_PACKET sockets.
std::vector<Captured> capture_during(const std::string& ns, const std::vector<std::string>& ifnames,
                                     const std::function<void()>& action, int linger_ms = 300);

}  // namespace udpring::test
