#include "encap/gso_train.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <vector>

namespace udpring {
namespace {

using encap::EncapResult;
using encap::EncapVerdict;
using encap::GsoTrain;
using encap::PacketRef;

// A batch described by (peer, length, verdict) per packet; the bytes are
// never read, only the lengths.
struct Batch {
  std::vector<core::NextHop> hops;
  std::vector<uint8_t> storage = std::vector<uint8_t>(1);
  std::vector<PacketRef> pkts;
  std::vector<EncapResult> results;

  Batch() { hops.reserve(8); }
  core::NextHop& peer(const char* ip, uint16_t port = 8285) {
    hops.push_back({*core::parse_ipv4(ip), htons(port)});
    return hops.back();
  }
  void add(const core::NextHop* hop, uint32_t len, EncapVerdict v = EncapVerdict::kSend) {
    pkts.push_back({storage.data(), len});
    results.push_back({hop, v});
  }
  std::vector<GsoTrain> group(uint32_t max_segments = encap::kMaxGsoSegments) const {
    std::vector<GsoTrain> out(pkts.size());
    out.resize(encap::group_gso_trains(pkts, results, max_segments, out));
    return out;
  }
};

void expect_train(const GsoTrain& t, uint32_t first, uint32_t count, uint32_t seg) {
  EXPECT_EQ(t.first, first);
  EXPECT_EQ(t.count, count);
  EXPECT_EQ(t.seg_bytes, seg);
}

TEST(GsoTrains, OnePeerOneSizeIsOneTrainEndedByAShorterPacket) {
  Batch b;
  const auto& a = b.peer("192.168.1.20");
  for (int i = 0; i < 4; ++i) b.add(&a, 1400);
  b.add(&a, 600);   // shorter: may end the train
  b.add(&a, 1400);  // so this one starts the next
  const auto trains = b.group();
  ASSERT_EQ(trains.size(), 2u);
  expect_train(trains[0], 0, 5, 1400);
  expect_train(trains[1], 5, 1, 1400);
}

TEST(GsoTrains, APeerChangeALongerPacketOrADropEndsATrain) {
  Batch b;
  const auto& a = b.peer("192.168.1.20");
  const auto& c = b.peer("192.168.1.30");
  const auto& a_other_port = b.peer("192.168.1.20", 8286);
  b.add(&a, 1000);
  b.add(&a, 1000);
  b.add(&c, 1000);             // another peer
  b.add(&c, 1200);             // longer than the train's first: a new train
  b.add(&a_other_port, 1200);  // same address, other port: another peer
  b.add(&a_other_port, 1200);
  b.add(nullptr, 1200, EncapVerdict::kDropNoRoute);
  b.add(&a_other_port, 1200);  // after a drop: a new train
  const auto trains = b.group();
  ASSERT_EQ(trains.size(), 5u);
  expect_train(trains[0], 0, 2, 1000);
  expect_train(trains[1], 2, 1, 1000);
  expect_train(trains[2], 3, 1, 1200);
  expect_train(trains[3], 4, 2, 1200);
  expect_train(trains[4], 7, 1, 1200);
}

TEST(GsoTrains, RespectsTheSegmentAndByteLimits) {
  Batch b;
  const auto& a = b.peer("192.168.1.20");
  for (int i = 0; i < 70; ++i) b.add(&a, 100);
  auto trains = b.group();
  ASSERT_EQ(trains.size(), 2u);
  expect_train(trains[0], 0, encap::kMaxGsoSegments, 100);
  expect_train(trains[1], encap::kMaxGsoSegments, 70 - encap::kMaxGsoSegments, 100);

  // 46 datagrams of 1400 bytes are 64,400 bytes; a 47th would pass 65,507.
  Batch big;
  const auto& p = big.peer("192.168.1.20");
  for (int i = 0; i < 50; ++i) big.add(&p, 1400);
  trains = big.group();
  ASSERT_EQ(trains.size(), 2u);
  EXPECT_EQ(trains[0].count, 46u);
  EXPECT_LE(trains[0].count * 1400u, encap::kMaxGsoBytes);
  EXPECT_EQ(trains[1].count, 4u);
}

TEST(GsoTrains, WithoutGsoEveryPacketIsItsOwnSend) {
  Batch b;
  const auto& a = b.peer("192.168.1.20");
  for (int i = 0; i < 5; ++i) b.add(&a, 1400);
  b.add(nullptr, 1400, EncapVerdict::kDropTtl);
  const auto trains = b.group(1);
  ASSERT_EQ(trains.size(), 5u);
  for (uint32_t i = 0; i < 5; ++i) expect_train(trains[i], i, 1, 1400);
}

TEST(GsoTrains, AnAllDroppedBatchHasNoTrain) {
  Batch b;
  b.add(nullptr, 60, EncapVerdict::kDropBadHeader);
  b.add(nullptr, 60, EncapVerdict::kDropNoRoute);
  EXPECT_TRUE(b.group().empty());
}

TEST(OpenTrain, TakesDatagramsOfOnePeerAndSizeUntilAShortOne) {
  const core::NextHop a{*core::parse_ipv4("192.168.1.20"), htons(8285)};
  const core::NextHop c{*core::parse_ipv4("192.168.1.30"), htons(8285)};
  encap::OpenTrain t{a, 1448, 0, 0};
  EXPECT_TRUE(t.accepts(a, 1448, 1448));
  EXPECT_FALSE(t.accepts(c, 1448, 1448)) << "another peer";
  EXPECT_FALSE(t.accepts(a, 1000, 1000)) << "a split of another segment size";
  EXPECT_FALSE(t.add(1448));
  EXPECT_TRUE(t.add(500)) << "a short datagram closes the train";
  EXPECT_EQ(t.datagrams, 2u);
  EXPECT_EQ(t.bytes, 1948u);

  encap::OpenTrain full{a, 1448, encap::kMaxGsoSegments, 1448 * 10};
  EXPECT_FALSE(full.accepts(a, 1448, 1448)) << "segment limit";
  encap::OpenTrain heavy{a, 1448, 45, 45 * 1448};
  EXPECT_FALSE(heavy.accepts(a, 1448, 1448)) << "byte limit: 46 x 1448 > 65507";
}

}  // namespace
}  // namespace udpring
