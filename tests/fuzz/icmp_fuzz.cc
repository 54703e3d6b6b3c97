// ICMP Net Unreachable for a packet no route covers, from both places the
// daemon builds one: a lone TUN read that encapsulate_batch validated
// (TunToUdp::flush_batch), and a TSO/USO super-packet, which
// TunToUdp::send_tso has only checked for 20 bytes and version 4.
//
// Input: [mode][packet...]; mode bit 0: the super-packet's checks only.
// The offender sits in a buffer of its exact size and the reply in one of
// kIcmpUnreachMaxBytes, so a read or write past either is an ASan report.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/ipv4.h"
#include "encap/icmp.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_routes.h"

namespace {

using namespace udpring;

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool super_packet = data[0] & 1;
  const std::vector<uint8_t> pkt(data + 1, data + size);
  if (super_packet) {
    if (pkt.size() < core::kIpv4MinHeaderBytes || (pkt[0] >> 4) != 4) return 0;
  } else if (core::validate_ipv4(pkt.data(), pkt.size()) != core::Ipv4Error::kOk) {
    return 0;
  }
  std::vector<uint8_t> out(encap::kIcmpUnreachMaxBytes);
  const core::Be32 src = fuzz::kOwnLease.network;

  const size_t n = encap::build_net_unreachable(pkt.data(), pkt.size(), src, out.data());

  if (n == 0) return 0;
  // A reply is one valid IPv4 packet from us back to the offender's
  // source, with both checksums right, quoting the offender's header and
  // at most 8 bytes after it, and never answers an ICMP error.
  FUZZ_CHECK(n > 28 && n <= out.size());
  FUZZ_CHECK(core::validate_ipv4(out.data(), n) == core::Ipv4Error::kOk);
  FUZZ_CHECK(core::ones_sum(out.data(), 20) == 0xffff);
  FUZZ_CHECK(core::ones_sum(out.data() + 20, n - 20) == 0xffff);
  FUZZ_CHECK(out[8] == encap::kIcmpNetUnreachTtl && out[9] == core::kIpProtoIcmp);
  FUZZ_CHECK(std::memcmp(out.data() + 12, &src.raw, 4) == 0);
  FUZZ_CHECK(std::memcmp(out.data() + 16, pkt.data() + 12, 4) == 0);
  FUZZ_CHECK(out[20] == 3 && out[21] == 0);
  const size_t ihl = size_t{pkt[0] & 0x0fu} * 4;
  const size_t quote = n - 28;
  FUZZ_CHECK(quote >= std::min(ihl, pkt.size()) && quote <= std::min(ihl + 8, pkt.size()));
  FUZZ_CHECK(std::memcmp(out.data() + 28, pkt.data(), quote) == 0);
  FUZZ_CHECK((load16(pkt.data() + 6) & 0x1fff) == 0);  // a first fragment or none
  if (pkt[9] == core::kIpProtoIcmp && pkt.size() > ihl) {
    const uint8_t type = pkt[ihl];
    FUZZ_CHECK(type != 3 && type != 4 && type != 5 && type != 11 && type != 12);
  }
  return 0;
}
