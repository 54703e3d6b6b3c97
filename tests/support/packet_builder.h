#pragma once
// Builds IPv4 packets for tests: a fluent description turned into bytes with
// a correct header checksum (unless told otherwise).

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/ipv4.h"
#include "core/ipv4_addr.h"

namespace udpring::test {

class PacketBuilder {
 public:
  PacketBuilder& src(const std::string& a) { src_ = *core::parse_ipv4(a); return *this; }
  PacketBuilder& dst(const std::string& a) { dst_ = *core::parse_ipv4(a); return *this; }
  PacketBuilder& ttl(uint8_t t) { ttl_ = t; return *this; }
  PacketBuilder& protocol(uint8_t p) { proto_ = p; return *this; }
  PacketBuilder& payload_bytes(size_t n) { payload_.assign(n, 0); fill(); return *this; }
  PacketBuilder& payload(std::vector<uint8_t> p) { payload_ = std::move(p); return *this; }
  /// IP options, padded by the caller to a multiple of 4 bytes.
  PacketBuilder& options(std::vector<uint8_t> o) { options_ = std::move(o); return *this; }
  PacketBuilder& frag(uint16_t field) { frag_ = field; return *this; }
  PacketBuilder& id(uint16_t v) { id_ = v; return *this; }
  PacketBuilder& tos(uint8_t v) { tos_ = v; return *this; }

  std::vector<uint8_t> build() const {
    const size_t ihl = 20 + options_.size();
    std::vector<uint8_t> p(ihl + payload_.size());
    const size_t total = p.size();
    p[0] = static_cast<uint8_t>(0x40 | (ihl / 4));
    p[1] = tos_;
    p[2] = static_cast<uint8_t>(total >> 8);
    p[3] = static_cast<uint8_t>(total);
    p[4] = static_cast<uint8_t>(id_ >> 8);
    p[5] = static_cast<uint8_t>(id_);
    p[6] = static_cast<uint8_t>(frag_ >> 8);
    p[7] = static_cast<uint8_t>(frag_);
    p[8] = ttl_;
    p[9] = proto_;
    std::memcpy(&p[12], &src_.raw, 4);
    std::memcpy(&p[16], &dst_.raw, 4);
    std::copy(options_.begin(), options_.end(), p.begin() + 20);
    std::copy(payload_.begin(), payload_.end(), p.begin() + static_cast<long>(ihl));
    core::ipv4_set_header_checksum(p.data());
    return p;
  }

 private:
  void fill() {
    for (size_t i = 0; i < payload_.size(); ++i) payload_[i] = static_cast<uint8_t>(i * 7 + 3);
  }
  core::Be32 src_ = *core::parse_ipv4("10.5.1.2");
  core::Be32 dst_ = *core::parse_ipv4("10.5.2.3");
  uint8_t ttl_ = 64;
  uint8_t proto_ = core::kIpProtoUdp;
  uint8_t tos_ = 0;
  uint16_t frag_ = 0x4000;  // DF
  uint16_t id_ = 0x1234;
  std::vector<uint8_t> payload_ = std::vector<uint8_t>(32, 0xab);
  std::vector<uint8_t> options_;
};

/// True when the header checksum of a packet verifies (sum folds to 0xffff).
/// `n` pseudo-random bytes, the same for the same seed.
inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

inline bool header_checksum_ok(const std::vector<uint8_t>& p) {
  return core::ones_sum(p.data(), size_t{p[0] & 0x0fu} * 4) == 0xffff;
}

/// An IPv4/TCP segment (20-byte TCP header, no options) with correct
/// checksums.
inline std::vector<uint8_t> tcp_segment(const std::string& src, const std::string& dst, uint16_t sport,
                                        uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
                                        const std::vector<uint8_t>& data) {
  std::vector<uint8_t> tcp(20 + data.size(), 0);
  auto put16 = [&](size_t at, uint32_t v) {
    tcp[at] = static_cast<uint8_t>(v >> 8);
    tcp[at + 1] = static_cast<uint8_t>(v);
  };
  put16(0, sport);
  put16(2, dport);
  put16(4, seq >> 16);
  put16(6, seq & 0xffff);
  put16(8, ack >> 16);
  put16(10, ack & 0xffff);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  put16(14, 65535);  // window
  std::copy(data.begin(), data.end(), tcp.begin() + 20);
  auto pkt = PacketBuilder().src(src).dst(dst).protocol(core::kIpProtoTcp).payload(tcp).build();
  // Pseudo-header: addresses, protocol, TCP length.
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo, &pkt[12], 8);
  pseudo[9] = core::kIpProtoTcp;
  pseudo[10] = static_cast<uint8_t>(tcp.size() >> 8);
  pseudo[11] = static_cast<uint8_t>(tcp.size());
  const uint32_t sum = core::ones_sum(pkt.data() + 20, tcp.size(), core::ones_sum(pseudo, sizeof pseudo));
  const uint16_t c = static_cast<uint16_t>(~sum & 0xffff);
  pkt[36] = static_cast<uint8_t>(c >> 8);
  pkt[37] = static_cast<uint8_t>(c);
  return pkt;
}

}  // namespace udpring::test
