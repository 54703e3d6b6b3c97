// Qsbr's grace-period rules, and a reader/writer stress test of RouteTable
// publishing through it. The stress test asserts no timing: it checks what
// readers see, and relies on ASan (use-after-free) and TSan (races between
// build/free and lookups) to catch early reclamation.

#include "core/qsbr.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/route_table.h"
#include "tests/support/sanitizers.h"

namespace udpring::core {
namespace {

TEST(QsbrTest, ReadersStartOffline) {
  Qsbr qsbr(3);
  EXPECT_EQ(qsbr.readers(), 3u);
  EXPECT_TRUE(qsbr.all_passed(qsbr.advance()));
}

TEST(QsbrTest, AdvanceReturnsIncreasingEpochs) {
  Qsbr qsbr(1);
  const uint64_t first = qsbr.epoch();
  const uint64_t a = qsbr.advance();
  const uint64_t b = qsbr.advance();
  EXPECT_EQ(a, first + 1);
  EXPECT_EQ(b, a + 1);
  EXPECT_EQ(qsbr.epoch(), b);
}

TEST(QsbrTest, OnlineReaderBlocksUntilQuiescent) {
  Qsbr qsbr(1);
  qsbr.online(0);
  const uint64_t epoch = qsbr.advance();
  EXPECT_FALSE(qsbr.all_passed(epoch));
  EXPECT_FALSE(qsbr.all_passed(epoch));  // asking again changes nothing
  qsbr.quiescent(0);
  EXPECT_TRUE(qsbr.all_passed(epoch));
}

TEST(QsbrTest, QuiescentBeforeAdvanceDoesNotPassIt) {
  Qsbr qsbr(1);
  qsbr.online(0);
  qsbr.quiescent(0);
  const uint64_t epoch = qsbr.advance();
  EXPECT_FALSE(qsbr.all_passed(epoch));
  // An earlier epoch was passed by that report.
  EXPECT_TRUE(qsbr.all_passed(epoch - 1));
}

TEST(QsbrTest, EveryOnlineReaderMustReport) {
  Qsbr qsbr(3);
  qsbr.online(0);
  qsbr.online(1);  // reader 2 stays offline
  const uint64_t epoch = qsbr.advance();
  qsbr.quiescent(0);
  EXPECT_FALSE(qsbr.all_passed(epoch));
  qsbr.quiescent(1);
  EXPECT_TRUE(qsbr.all_passed(epoch));
}

TEST(QsbrTest, OfflineReaderCountsAsPassed) {
  Qsbr qsbr(2);
  qsbr.online(0);
  qsbr.online(1);
  const uint64_t epoch = qsbr.advance();
  qsbr.offline(0);
  EXPECT_FALSE(qsbr.all_passed(epoch));  // reader 1 still holds references
  qsbr.offline(1);
  EXPECT_TRUE(qsbr.all_passed(epoch));
  // Still passed for later epochs while offline.
  EXPECT_TRUE(qsbr.all_passed(qsbr.advance()));
}

TEST(QsbrTest, ReaderOnlineAfterAdvanceHasPassedIt) {
  // A reader that comes online after the advance can only load the new
  // pointer, so it must not hold up the old object.
  Qsbr qsbr(1);
  const uint64_t epoch = qsbr.advance();
  qsbr.online(0);
  EXPECT_TRUE(qsbr.all_passed(epoch));
  EXPECT_FALSE(qsbr.all_passed(qsbr.advance()));
}

TEST(QsbrTest, RetiredSnapshotOutlivesOnlineReader) {
  Qsbr qsbr(1);
  RouteTable table(qsbr);
  table.set(Route{Ipv4Prefix{Be32::from_host(0x0AF4'0100u), 24},
                  NextHop{Be32::from_host(0xC0A8'0001u), 0}});
  qsbr.online(0);
  const RouteSnapshot* held = table.current();

  table.publish();
  EXPECT_NE(table.current(), held);
  EXPECT_EQ(table.reclaim(), 1u);
  // Still readable: ASan would flag this if the snapshot had been freed.
  EXPECT_EQ(held->route_count(), 0u);
  EXPECT_EQ(held->lookup(Be32::from_host(0x0AF4'0101u)), nullptr);

  qsbr.quiescent(0);
  EXPECT_EQ(table.reclaim(), 0u);
  qsbr.offline(0);
}

TEST(QsbrTest, PublishWhileReaderOfflineFreesImmediately) {
  Qsbr qsbr(1);
  RouteTable table(qsbr);
  qsbr.online(0);
  qsbr.offline(0);
  table.publish();
  EXPECT_EQ(table.reclaim(), 0u);
}

// ---- Stress: readers look up while the control thread churns ----

// Sanitizers are 5-15x slower.
constexpr uint32_t kGenerations =
    test::kThreadSanitizer || test::kAddressSanitizer ? 1000 : 4000;
constexpr size_t kReaders = 3;

// Every generation maps every probe to this hop, so a reader can tell which
// generation a snapshot belongs to and that it is internally consistent.
NextHop generation_hop(uint32_t generation) {
  return NextHop{Be32::from_host(0x6440'0000u + generation),  // 100.64.0.0/10
                 static_cast<uint16_t>(generation * 2654435761u >> 16)};
}

// Probe routes at every trie level: a /12 (root), /20 and /24 (level 2),
// /28 and /32 (level 3). Each probe address is covered by exactly one.
struct Probe {
  Ipv4Prefix prefix;
  Be32 addr;
};
std::vector<Probe> probes() {
  std::vector<Probe> out;
  const auto add = [&out](uint32_t net, uint8_t len, uint32_t host) {
    out.push_back(Probe{Ipv4Prefix{Be32::from_host(net), len}, Be32::from_host(net | host)});
  };
  add(0x0A00'0000u, 12, 0x0'3456u);  // 10.0.0.0/12
  for (uint32_t i = 0; i < 16; ++i) {
    add(0x0A40'0000u + (i << 8), 24, 7);  // 10.64.i.0/24
  }
  add(0x0A50'0000u, 20, 0x0F01u);  // 10.80.0.0/20
  add(0x0A60'0010u, 28, 0x5u);     // 10.96.0.16/28
  add(0x0A60'0101u, 32, 0);        // 10.96.1.1/32
  return out;
}

struct ReaderResult {
  uint64_t turns = 0;
  uint64_t errors = 0;
  uint64_t generations_seen = 0;
  std::string first_error;
};

class QsbrStressTest : public testing::Test {
 protected:
  void reader(size_t id, ReaderResult& result) {
    const std::vector<Probe> probe_set = probes();
    std::vector<Be32> dsts;
    for (const Probe& p : probe_set) {
      dsts.push_back(p.addr);
    }
    std::vector<const NextHop*> batch(dsts.size());
    std::mt19937 rng(static_cast<uint32_t>(id));
    const auto fail = [&result](const std::string& what) {
      if (result.errors++ == 0) {
        result.first_error = what;
      }
    };

    qsbr_.online(id);
    uint32_t last = 0;
    while (!stop_.load(std::memory_order_acquire)) {
      const RouteSnapshot* snap = table_.current();
      const NextHop* first = snap->lookup(dsts[0]);
      // Generation 0 is the empty snapshot from construction.
      const uint32_t generation = first ? first->addr.host() - 0x6440'0000u : 0;
      if (generation < last) {
        fail("generation went back from " + std::to_string(last) + " to " +
             std::to_string(generation));
      }
      if (generation > 0) {
        const NextHop want = generation_hop(generation);
        for (size_t i = 0; i < dsts.size(); ++i) {
          const NextHop* hop = snap->lookup(dsts[i]);
          if (hop == nullptr || !(*hop == want)) {
            fail("probe " + std::to_string(i) + " inconsistent in generation " +
                 std::to_string(generation));
          }
        }
        snap->lookup_batch(dsts, batch);
        for (size_t i = 0; i < dsts.size(); ++i) {
          if (batch[i] == nullptr || !(*batch[i] == want)) {
            fail("batch probe " + std::to_string(i) + " inconsistent in generation " +
                 std::to_string(generation));
          }
        }
        if (!snap->is_peer(want.addr)) {
          fail("generation " + std::to_string(generation) + " hop is not a peer");
        }
      }
      // Touch the churned part of the table too (any answer is valid).
      for (int i = 0; i < 8; ++i) {
        const NextHop* hop = snap->lookup(Be32::from_host(0xAC10'0000u | (rng() & 0xF'FFFFu)));
        if (hop != nullptr && hop->port_be != 1) {
          fail("churn route with wrong port");
        }
      }
      if (generation != last || result.turns == 0) {
        ++result.generations_seen;
        // release/acquire with the waits below: only the value matters, but
        // it keeps the handoff obviously race-free.
        progress_[id].generation.store(generation, std::memory_order_release);
      }
      last = generation;
      ++result.turns;
      // `snap` and every hop pointer are dead from here on.
      qsbr_.quiescent(id);
      // Yield while online too (a worker busy with packets): it delays grace
      // periods without blocking them, and leaves the writer some CPU on a
      // 2-core machine, where 3 spinning readers would starve it.
      std::this_thread::yield();
      if (result.turns % 64 == 0) {
        // Like a worker blocking in io_uring_wait_cqe.
        qsbr_.offline(id);
        std::this_thread::sleep_for(std::chrono::microseconds(20));
        qsbr_.online(id);
      }
    }
    qsbr_.offline(id);
  }

  Qsbr qsbr_{kReaders};
  RouteTable table_{qsbr_};
  std::atomic<bool> stop_{false};
  // Last generation each reader saw; own line each so readers don't slow
  // each other down.
  struct alignas(64) Progress {
    std::atomic<uint32_t> generation{UINT32_MAX};
  };
  Progress progress_[kReaders];
};

TEST_F(QsbrStressTest, ReadersNeverSeeTornOrFreedSnapshots) {
  std::vector<ReaderResult> results(kReaders);
  std::vector<std::thread> threads;
  for (size_t id = 0; id < kReaders; ++id) {
    threads.emplace_back([this, id, &results] { reader(id, results[id]); });
  }
  // Start churning only once every reader has done a turn, so they overlap.
  for (size_t id = 0; id < kReaders; ++id) {
    while (progress_[id].generation.load(std::memory_order_acquire) == UINT32_MAX) {
      std::this_thread::yield();
    }
  }

  // Churn: 172.16.0.0/12 routes of random length (port 1), added and
  // removed at random, plus a full replace_all now and then.
  std::mt19937 rng(12345);
  std::vector<Ipv4Prefix> churn;
  size_t max_retired = 0;
  const std::vector<Probe> probe_set = probes();
  for (uint32_t generation = 1; generation <= kGenerations; ++generation) {
    for (int i = 0; i < 4; ++i) {
      const auto len = static_cast<uint8_t>(12 + rng() % 21);
      const uint32_t net = (0xAC10'0000u | (rng() & 0xF'FFFFu)) & Ipv4Prefix::host_mask(len);
      const Ipv4Prefix p{Be32::from_host(net), len};
      table_.set(Route{p, NextHop{Be32::from_host(0xC0A8'0000u | (rng() & 0xFFFFu)), 1}});
      churn.push_back(p);
    }
    while (churn.size() > 200) {
      const size_t victim = rng() % churn.size();
      table_.remove(churn[victim]);  // may already be gone: duplicates
      churn[victim] = churn.back();
      churn.pop_back();
    }
    if (generation % 500 == 0) {
      std::vector<Route> keep;
      for (size_t i = 0; i < churn.size(); i += 2) {
        keep.push_back(Route{churn[i], NextHop{Be32::from_host(0xC0A8'0000u), 1}});
      }
      table_.replace_all(keep);
    }
    for (const Probe& p : probe_set) {
      table_.set(Route{p.prefix, generation_hop(generation)});
    }
    table_.publish();
    max_retired = std::max(max_retired, table_.reclaim());
    if (generation % 64 == 0) {
      std::this_thread::yield();  // let readers in on a busy 2-core box
    }
  }

  // Every reader must reach the last generation before stopping, so each
  // one has run across the whole churn (no timing involved: they spin
  // until they see it).
  for (size_t id = 0; id < kReaders; ++id) {
    while (progress_[id].generation.load(std::memory_order_acquire) != kGenerations) {
      std::this_thread::yield();
    }
  }
  stop_.store(true, std::memory_order_release);
  for (std::thread& t : threads) {
    t.join();
  }

  // Readers are offline now: everything retired can go.
  EXPECT_EQ(table_.reclaim(), 0u);
  for (size_t id = 0; id < kReaders; ++id) {
    SCOPED_TRACE("reader " + std::to_string(id));
    EXPECT_EQ(results[id].errors, 0u) << results[id].first_error;
    EXPECT_GT(results[id].turns, 0u);
    RecordProperty("reader" + std::to_string(id) + "_generations_seen",
                   std::to_string(results[id].generations_seen));
  }
  RecordProperty("max_retired", std::to_string(max_retired));
}

}  // namespace
}  // namespace udpring::core
