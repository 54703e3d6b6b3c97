// The soak: two nodes on the file store carry verified TCP both ways and a
// ping every 20 ms for UDPRING_SOAK_SECONDS, while a third party rewrites
// and deletes other leases at 1,200 changes a second and node 1 floods node
// 0's port with garbage (tests/support/garbage_flood.h). The routes that do
// not change must lose nothing but what TCP retransmits; the daemons' RSS
// and open files must stay flat; the churn must be applied, and both
// daemons stop cleanly (under a sanitizer build, with nothing reported).

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/cluster.h"
#include "tests/support/garbage_flood.h"
#include "tests/support/metrics.h"
#include "tests/support/netns.h"
#include "tests/support/sanitizers.h"
#include "tests/support/traffic.h"

namespace udpring::test {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint16_t kHealthPort = 9141;
// This program's build, and so the udpringd built beside it.
constexpr bool kSanitized = kAddressSanitizer;

double soak_seconds() {
  const char* s = std::getenv("UDPRING_SOAK_SECONDS");
  return s ? std::atof(s) : 20;
}

// Lease changes by a third party: leases 10.60.200.0/24 to 10.60.255.0/24
// (never a daemon's: flannel's allocator takes the lowest free ones)
// written with a new PublicIP or deleted, `rate` times a second.
class LeaseChurn {
 public:
  LeaseChurn(std::string subnets_dir, double rate) : dir_(std::move(subnets_dir)), rate_(rate) {}

  void run(const std::atomic<bool>& stop) {
    // The third party is load, not what is tested: ahead of the traffic's
    // threads, it offers its rate even when the two cores are saturated
    // (at a fair share it made 654 changes a second in one CI run).
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), -10);
    std::mt19937 rng(42);
    std::vector<bool> present(kLeases, false);
    const auto t0 = Clock::now();
    while (!stop) {
      for (int i = 0; i < 12; ++i) {
        const int n = static_cast<int>(rng() % kLeases);
        const std::string name = dir_ + "/10.60." + std::to_string(200 + n) + ".0-24";
        if (present[n] && rng() % 2) {
          std::filesystem::remove(name);
          present[n] = false;
        } else {
          write(name, "192.168.78." + std::to_string(100 + rng() % 90));
          present[n] = true;
        }
        ++changes;
      }
      const auto due = t0 + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(static_cast<double>(changes) / rate_));
      if (due > Clock::now()) std::this_thread::sleep_until(due);
    }
    seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    // The end state is known: no churned lease is left.
    for (int n = 0; n < kLeases; ++n) {
      std::filesystem::remove(dir_ + "/10.60." + std::to_string(200 + n) + ".0-24");
    }
  }

  uint64_t changes = 0;
  double seconds = 0;

 private:
  static constexpr int kLeases = 56;

  void write(const std::string& name, const std::string& ip) {
    const std::string tmp = dir_ + "/.churn-tmp";
    std::ofstream(tmp) << R"({"PublicIP":")" + ip + R"(","PublicIPv6":null})";
    const timespec t[2] = {{std::time(nullptr) + 3600, 0}, {std::time(nullptr) + 3600, 0}};
    utimensat(AT_FDCWD, tmp.c_str(), t, 0);
    std::filesystem::rename(tmp, name);
  }

  std::string dir_;
  double rate_;
};

struct Sample {
  long rss[2];
  int fds[2];
  long long routes[2];
};

TEST(Soak, TrafficChurnAndFloodLoseNothingAndGrowNothing) {
  UDPRING_REQUIRE_INTEGRATION();
  const double seconds = soak_seconds();
  Cluster cluster(2);
  const std::string lease_dir = cluster.lease_dir();
  std::vector<std::unique_ptr<Process>> d;
  std::vector<std::string> env, pod;
  for (int i = 0; i < 2; ++i) {
    env.push_back(cluster.subnet_env(i));
    d.push_back(cluster.start_on_file_store(
        i, {"--workers=2", "--healthz-ip=127.0.0.1", "--healthz-port=" + std::to_string(kHealthPort)}));
    ASSERT_FALSE(::testing::Test::HasFailure());
  }
  for (int i = 0; i < 2; ++i) pod.push_back(cluster.add_pod(i, env[i]));
  ASSERT_TRUE(Cluster::reachable_within(cluster.pod(0), pod[1], 3000));
  ASSERT_TRUE(Cluster::reachable_within(cluster.pod(1), pod[0], 3000));

  // The flood: from node 1 (a known peer) and a stranger's address on its
  // link, to node 0, aimed at pod 0.
  sh_ok("ip -n " + cluster.node(1).name() + " addr add 192.168.78.200/24 dev u0");
  const std::string lease0 = Cluster::lease_from_env(env[0]);
  GarbageFloodPlan plan;
  plan.ns = cluster.node(1).name();
  plan.peer_ip = Cluster::node_ip(1);
  plan.stranger_ip = "192.168.78.200";
  plan.dst_ip = Cluster::node_ip(0);
  plan.victim_ip = pod[0];
  plan.victim_node_subnet_ip = lease0.substr(0, lease0.rfind('.')) + ".77";
  plan.relay_ip = Cluster::node_ip(0);
  plan.rate = 20000;

  // Warm-up: each path, and each worker's buffers (their pages come in as
  // packets land on them), used once, then the soak's load for a moment
  // (both ways at once, with churn), so that what is sampled next is growth.
  plan.seconds = 2;
  garbage_flood(plan);
  tcp_each_way_in_turn(cluster.pod(0).name(), pod[0], cluster.pod(1).name(), pod[1], 2, 5290, 32ull << 20);
  {
    std::atomic<bool> warm{false};
    LeaseChurn churn(lease_dir + "/subnets", 1200);
    std::thread churning([&] { churn.run(warm); });
    std::thread back([&] {
      tcp_transfer_verified(cluster.pod(0).name(), pod[0], 5294, cluster.pod(1).name(), 128ull << 20);
    });
    tcp_transfer_verified(cluster.pod(1).name(), pod[1], 5295, cluster.pod(0).name(), 128ull << 20);
    back.join();
    warm = true;
    churning.join();
  }

  auto sample = [&] {
    Sample s{};
    for (int i = 0; i < 2; ++i) {
      s.rss[i] = rss_kib(d[i]->pid());
      s.fds[i] = open_fds(d[i]->pid());
      s.routes[i] = metric(http_get(cluster.node(i).name(), kHealthPort, "/metrics"), "udpring_routes");
    }
    return s;
  };

  // Idle, before and after: the same files open then.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const Sample idle_before = sample();

  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  uint64_t moved[2] = {};
  int transfers[2] = {};
  std::string errors[2];
  for (int dir = 0; dir < 2; ++dir) {
    threads.emplace_back([&, dir] {
      const int to = 1 - dir;
      try {
        for (uint16_t port = 5301; !stop; ++port) {
          moved[dir] += tcp_transfer_verified(cluster.pod(to).name(), pod[to], port,
                                              cluster.pod(dir).name(), 32ull << 20);
          ++transfers[dir];
        }
      } catch (const std::exception& e) {
        errors[dir] = e.what();
      }
    });
  }
  LeaseChurn churn(lease_dir + "/subnets", 1200);
  threads.emplace_back([&] { churn.run(stop); });
  GarbageFloodResult flood;
  threads.emplace_back([&] {
    plan.seconds = 1e9;
    plan.stop = &stop;
    flood = garbage_flood(plan);
  });
  const int pings = static_cast<int>(seconds * 50);
  std::string ping_out;
  threads.emplace_back([&] {
    ping_out = sh_out(cluster.pod(0).exec() + "ping -q -i 0.02 -W 1 -c " + std::to_string(pings) + " " +
                      pod[1] + " 2>&1");
  });

  std::vector<Sample> samples;
  const auto t0 = Clock::now();
  while (Clock::now() - t0 < std::chrono::duration<double>(seconds)) {
    samples.push_back(sample());
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  stop = true;
  for (auto& t : threads) t.join();

  // The churn's end state (no churned lease) reaches both daemons.
  Sample end{};
  for (int tries = 0; tries < 50; ++tries) {
    end = sample();
    if (end.routes[0] == 1 && end.routes[1] == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  samples.push_back(end);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const Sample idle_after = sample();

  std::smatch got;
  const bool parsed = std::regex_search(ping_out, got, std::regex(R"((\d+) packets transmitted, (\d+) received)"));
  const long sent = parsed ? std::stol(got[1]) : 0, answered = parsed ? std::stol(got[2]) : 0;
  std::printf("soak of %.0f s: lease changes %llu in %.1f s (%.0f/s); flood %llu datagrams (%.0f/s)\n",
              seconds, static_cast<unsigned long long>(churn.changes), churn.seconds,
              static_cast<double>(churn.changes) / churn.seconds,
              static_cast<unsigned long long>(flood.sent), static_cast<double>(flood.sent) / flood.seconds);
  std::printf("TCP: %d + %d transfers, %llu + %llu MiB verified; pings %ld sent, %ld answered\n", transfers[0],
              transfers[1], static_cast<unsigned long long>(moved[0] >> 20),
              static_cast<unsigned long long>(moved[1] >> 20), sent, answered);
  long long routes_min = 1 << 30, routes_max = 0;
  for (const auto& s : samples) {
    routes_min = std::min({routes_min, s.routes[0], s.routes[1]});
    routes_max = std::max({routes_max, s.routes[0], s.routes[1]});
  }
  for (int i = 0; i < 2; ++i) {
    long rss_max = 0;
    int fds_max = 0;
    std::string rss_series;
    for (const auto& s : samples) {
      rss_max = std::max(rss_max, s.rss[i]);
      fds_max = std::max(fds_max, s.fds[i]);
      rss_series += " " + std::to_string(s.rss[i] - idle_before.rss[i]);
    }
    std::printf("node %d: RSS %ld KiB idle, then +KiB every 2 s:%s; idle after +%ld\n", i, idle_before.rss[i],
                rss_series.c_str(), idle_after.rss[i] - idle_before.rss[i]);
    std::printf("node %d: fds %d idle, at most %d under load, %d idle after; routes %lld..%lld\n", i,
                idle_before.fds[i], fds_max, idle_after.fds[i], routes_min, routes_max);
    // Flat: the second half of the run no higher than the first (growth
    // that goes on, a leak, shows there), and in a Release build no more
    // than 1 MiB over the idle start. Under ASan the allocator holds freed
    // memory in its quarantine (up to 256 MiB) and its caches move by a few
    // MiB, so only the trend is checked, with that slack; LeakSanitizer
    // checks every exit.
    long first_half = 0, second_half = 0;
    for (size_t k = 0; k < samples.size(); ++k) {
      (k < samples.size() / 2 ? first_half : second_half) =
          std::max(k < samples.size() / 2 ? first_half : second_half, samples[k].rss[i]);
    }
    EXPECT_LT(second_half - first_half, kSanitized ? 8 * 1024 : 1024) << "node " << i;
    if (!kSanitized) {
      EXPECT_LT(rss_max - idle_before.rss[i], 1024) << "node " << i;
      EXPECT_LT(idle_after.rss[i] - idle_before.rss[i], 1024) << "node " << i;
    }
    // The same files open once idle again. Under load some are open for a
    // moment: the iptables check every 5 s holds its child's stdin
    // socketpair and stdout and stderr pipes (6 fds while it spawns), a lease
    // file being read, a scrape's connection. A CI run sampled 7 at once.
    EXPECT_EQ(idle_after.fds[i], idle_before.fds[i]) << "node " << i;
    EXPECT_LE(fds_max, idle_before.fds[i] + 8) << "node " << i;
  }

  EXPECT_GE(static_cast<double>(churn.changes) / churn.seconds, 1000);
  EXPECT_GE(static_cast<double>(flood.sent) / flood.seconds, 15000);
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_GE(transfers[0], 1);
  EXPECT_GE(transfers[1], 1);
  ASSERT_TRUE(parsed) << ping_out;
  EXPECT_EQ(answered, sent) << "the stable route lost pings\n" << ping_out;
  EXPECT_GT(routes_max, 1) << "the churn never showed in the routes";
  EXPECT_EQ(end.routes[0], 1);
  EXPECT_EQ(end.routes[1], 1);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(d[i]->stop(5000), 0) << d[i]->log().substr(0, 4000);
    const std::string log = d[i]->log();
    for (const char* report : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
      const size_t at = log.find(report);
      EXPECT_EQ(at, std::string::npos) << "node " << i << ":\n" << log.substr(at == std::string::npos ? 0 : at, 4000);
    }
  }
}

}  // namespace
}  // namespace udpring::test
