#include "tests/support/garbage_flood.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>

#include "core/ipv4.h"
#include "tests/support/netns.h"
#include "tests/support/packet_builder.h"

namespace udpring::test {
namespace {

enum Kind {
  kRandom, kTruncated, kBadIhl, kIpv6, kLengthLie, kOversized, kStranger, kForgedSource, kRelay,
};

struct Datagram {
  Kind kind;
  std::vector<uint8_t> bytes;
};

// An IPv4/UDP packet for dst:port with checksum 0 (valid over IPv4): what a
// pod's socket there would take, were it forwarded.
std::vector<uint8_t> udp_packet(const std::string& src, const std::string& dst, uint16_t port,
                                size_t data_bytes) {
  std::vector<uint8_t> udp(8 + data_bytes, 0x5a);
  udp[0] = 0x9c; udp[1] = 0x40;  // source port 40000
  udp[2] = static_cast<uint8_t>(port >> 8); udp[3] = static_cast<uint8_t>(port);
  udp[4] = static_cast<uint8_t>(udp.size() >> 8); udp[5] = static_cast<uint8_t>(udp.size());
  udp[6] = udp[7] = 0;
  return PacketBuilder().src(src).dst(dst).protocol(core::kIpProtoUdp).payload(udp).build();
}

Datagram make(Kind kind, const GarbageFloodPlan& p, std::mt19937& rng) {
  auto len = [&](size_t lo, size_t hi) { return lo + rng() % (hi - lo + 1); };
  switch (kind) {
    case kRandom: return {kind, random_bytes(len(1, 1400), rng())};
    case kTruncated: {
      auto b = random_bytes(len(1, 19), rng());
      b[0] = 0x45;
      return {kind, b};
    }
    case kBadIhl: {
      auto b = udp_packet(p.peer_ip, p.victim_ip, p.victim_port, 64);
      b[0] = static_cast<uint8_t>(0x40 | (rng() % 5));
      return {kind, b};
    }
    case kIpv6: {
      auto b = random_bytes(40 + len(0, 200), rng());
      b[0] = 0x60;
      return {kind, b};
    }
    case kLengthLie: {
      auto b = udp_packet("10.50.2.9", p.victim_ip, p.victim_port, 1372);
      b.resize(len(20, 600));
      return {kind, b};
    }
    case kOversized: return {kind, udp_packet("10.50.2.9", p.victim_ip, p.victim_port, len(1500, 3000))};
    case kStranger: return {kind, udp_packet("10.50.2.9", p.victim_ip, p.victim_port, len(0, 1300))};
    case kForgedSource:
      return {kind, udp_packet(p.victim_node_subnet_ip, p.victim_ip, p.victim_port, len(0, 1300))};
    case kRelay: return {kind, udp_packet("10.50.2.9", p.relay_ip, p.victim_port, len(0, 1300))};
  }
  throw std::logic_error("kind");
}

int bound_socket(const std::string& ip, bool fragment) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  const int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf);
  if (fragment) {
    const int pmtu = IP_PMTUDISC_DONT;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  inet_pton(AF_INET, ip.c_str(), &sa.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    const int err = errno;
    close(fd);
    throw std::runtime_error("flood: bind " + ip + ": " + std::strerror(err));
  }
  return fd;
}

// One source's datagrams, sent round after round from its own socket.
struct Source {
  int fd = -1;
  std::vector<Datagram> pool;
  size_t next = 0;
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iovs;
};

}  // namespace

const char* GarbageFloodResult::kind_name(int k) {
  static const char* const names[] = {"random bytes", "truncated header", "bad version/IHL",
                                      "IPv6", "length longer than datagram", "oversized",
                                      "valid from a stranger", "forged inner source",
                                      "relay elsewhere"};
  return names[k];
}

GarbageFloodResult garbage_flood(const GarbageFloodPlan& plan) {
  GarbageFloodResult result;
  run_in_netns(plan.ns, [&] {
    std::mt19937 rng(20261202);
    Source peer, stranger;
    peer.fd = bound_socket(plan.peer_ip, false);
    stranger.fd = bound_socket(plan.stranger_ip, true);
    for (int i = 0; i < 4096; ++i) {
      static constexpr Kind kPeerKinds[] = {kRandom, kTruncated, kBadIhl, kIpv6,
                                            kLengthLie, kForgedSource, kRelay};
      peer.pool.push_back(make(kPeerKinds[i % 7], plan, rng));
      stranger.pool.push_back(make(i % 2 ? kStranger : kOversized, plan, rng));
    }
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(plan.dst_port);
    inet_pton(AF_INET, plan.dst_ip.c_str(), &dst.sin_addr);

    // A round: 48 datagrams from the peer, 16 from the stranger.
    auto send_batch = [&](Source& s, size_t n) {
      s.msgs.assign(n, mmsghdr{});
      s.iovs.resize(n);
      for (size_t i = 0; i < n; ++i) {
        auto& d = s.pool[(s.next + i) % s.pool.size()];
        s.iovs[i] = {d.bytes.data(), d.bytes.size()};
        s.msgs[i].msg_hdr.msg_name = &dst;
        s.msgs[i].msg_hdr.msg_namelen = sizeof dst;
        s.msgs[i].msg_hdr.msg_iov = &s.iovs[i];
        s.msgs[i].msg_hdr.msg_iovlen = 1;
      }
      const int sent = sendmmsg(s.fd, s.msgs.data(), static_cast<unsigned>(n), 0);
      if (sent <= 0) {
        ++result.send_errors;
        return;
      }
      for (int i = 0; i < sent; ++i) ++result.by_kind[s.pool[(s.next + static_cast<size_t>(i)) % s.pool.size()].kind];
      s.next += static_cast<size_t>(sent);
      result.sent += static_cast<uint64_t>(sent);
    };
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const auto end = t0 + std::chrono::duration<double>(plan.seconds);
    uint64_t rounds = 0;
    while (Clock::now() < end && !(plan.stop && plan.stop->load())) {
      send_batch(peer, 48);
      send_batch(stranger, 16);
      ++rounds;
      // Rounds are due at the rate: sleep only when ahead of it.
      const auto due = t0 + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(static_cast<double>(rounds) * 64 / plan.rate));
      if (due > Clock::now()) std::this_thread::sleep_until(due);
    }
    result.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    close(peer.fd);
    close(stranger.fd);
  });
  return result;
}

}  // namespace udpring::test
