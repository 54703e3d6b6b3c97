#pragma once
// Builds IPv4 packets for tests: a fluent description turned into bytes with
// a correct header checksum (unless told otherwise).

#include <cstdint>
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
inline bool header_checksum_ok(const std::vector<uint8_t>& p) {
  return core::ones_sum(p.data(), size_t{p[0] & 0x0fu} * 4) == 0xffff;
}

}  // namespace udpring::test
