#include "encap/vnet_hdr.h"

#include "encap/coalesce.h"

#include <gtest/gtest.h>

#include "tests/support/offload_packets.h"

namespace udpring {
namespace {

using test::tcp_packet;

TEST(FinishChecksum, CompletesAPartialTcpChecksum) {
  auto p = tcp_packet(1, test::random_bytes(333, 1));
  ASSERT_TRUE(encap::tcp_checksum_ok(p.data(), p.size()));
  const auto good = p;
  // What the kernel hands over with NEEDS_CSUM: the pseudo-header sum.
  std::vector<uint8_t> pseudo(p.begin() + 12, p.begin() + 20);
  const size_t l4 = p.size() - 20;
  pseudo.insert(pseudo.end(), {0, 6, static_cast<uint8_t>(l4 >> 8), static_cast<uint8_t>(l4)});
  const uint32_t ps = core::ones_sum(pseudo.data(), 12);
  p[36] = static_cast<uint8_t>(ps >> 8);
  p[37] = static_cast<uint8_t>(ps);
  ASSERT_TRUE(encap::finish_checksum(p.data(), p.size(), 20, 16));
  EXPECT_EQ(p, good);
  EXPECT_FALSE(encap::finish_checksum(p.data(), p.size(), static_cast<uint16_t>(p.size() - 1), 16));
}

}  // namespace
}  // namespace udpring
