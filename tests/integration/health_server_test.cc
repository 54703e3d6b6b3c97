// The health server under a crowd, in a namespace of its own: hundreds of
// clients that connect and send nothing, or trickle a request line a byte
// at a time, and /healthz still answers every probe at once (kubelet gives a
// probe 1 s and restarts the daemon after three misses). Then the crowd is
// dropped by the deadlines, and the daemon's own server takes the same.

#include "io/control/http_server.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <sstream>
#include <thread>
#include <vector>

#include "core/ipv4_addr.h"
#include "tests/support/http_client.h"
#include "tests/support/netns.h"

namespace udpring::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr int kIdleClients = 200;
constexpr int kSlowClients = 200;
constexpr int kProbes = 20;
constexpr auto kProbeBudget = milliseconds(100);

std::string ns_name(const char* tag) { return "uriph" + std::to_string(getpid() % 100000) + tag; }

// The clients, the server's side of them and spare: more than a default
// soft limit of 1024.
void raise_fd_limit() {
  rlimit r{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &r), 0);
  ASSERT_GE(r.rlim_max, 4096u) << "the test needs a hard RLIMIT_NOFILE of 4096 (ulimit -Hn)";
  r.rlim_cur = std::max<rlim_t>(r.rlim_cur, 4096);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &r), 0);
}

// Sends the next byte of an endless request line ("GET /aaaa...") to each
// client every 100 ms until stopped: never idle, never a whole request.
class Trickle {
 public:
  explicit Trickle(std::vector<core::UniqueFd>& clients)
      : thread_([this, &clients] {
          for (size_t i = 0; !stop_.load(); ++i) {
            const char byte = i < 5 ? "GET /"[i] : 'a';
            for (auto& c : clients) (void)send(c.get(), &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            std::this_thread::sleep_for(milliseconds(100));
          }
        }) {}
  ~Trickle() {
    stop_.store(true);
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct Crowd {
  std::vector<core::UniqueFd> idle;  // from 127.0.0.2
  std::vector<core::UniqueFd> slow;  // from 127.0.0.3
};

// In the calling thread's namespace, to 127.0.0.1:port.
Crowd gather(uint16_t port) {
  Crowd crowd;
  for (int i = 0; i < kIdleClients; ++i) crowd.idle.push_back(http_connect("127.0.0.2", port));
  for (int i = 0; i < kSlowClients; ++i) crowd.slow.push_back(http_connect("127.0.0.3", port));
  return crowd;
}

// kProbes GETs of /healthz from 127.0.0.1, `gap` apart, each timed from
// connect to the server's close; every one must be 200 within the budget.
void expect_every_probe_quick(uint16_t port, milliseconds gap = milliseconds(50)) {
  std::vector<long> took_us;
  for (int i = 0; i < kProbes; ++i) {
    const auto start = steady_clock::now();
    core::UniqueFd c = http_connect("127.0.0.1", port);
    const std::string r = http_exchange(c.get(), "GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n", 2000);
    const auto took = steady_clock::now() - start;
    took_us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(took).count());
    EXPECT_EQ(http_status(r), 200) << "probe " << i << ": " << r;
    std::this_thread::sleep_for(gap);
  }
  std::ostringstream all;
  for (long us : took_us) all << us << " ";
  const long worst = *std::max_element(took_us.begin(), took_us.end());
  EXPECT_LT(worst, std::chrono::duration_cast<std::chrono::microseconds>(kProbeBudget).count())
      << "probe latencies (us): " << all.str();
  std::printf("probe latencies with %d idle and %d trickling clients (us): %s\n", kIdleClients,
              kSlowClients, all.str().c_str());
}

// Waits up to `timeout` for `done`; true if it came true.
template <typename F>
bool wait_for(F done, milliseconds timeout) {
  const auto end = steady_clock::now() + timeout;
  while (!done()) {
    if (steady_clock::now() > end) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

TEST(HealthServer, AnswersEveryProbeQuicklyWhileHundredsOfClientsHang) {
  UDPRING_REQUIRE_INTEGRATION();
  ASSERT_NO_FATAL_FAILURE(raise_fd_limit());
  Netns ns(ns_name("a"));
  run_in_netns(ns.name(), [&] {
    // The daemon's caps; deadlines long enough that the crowd stays for the
    // whole test (the next test lets them expire).
    io::HttpServer server(*core::parse_ipv4("127.0.0.1"), 0, [] { return std::string("udpring_x 1\n"); },
                          {.idle = std::chrono::seconds(60), .lifetime = milliseconds(120000),
                           .connections = 1024, .per_address = 256});
    Crowd crowd = gather(server.port());
    Trickle trickle(crowd.slow);
    const size_t all = kIdleClients + kSlowClients;
    ASSERT_TRUE(wait_for([&] { return server.connections() == all; }, milliseconds(5000)))
        << server.connections() << " of " << all << " clients accepted";
    expect_every_probe_quick(server.port());
    const std::string not_ready = http_exchange(http_connect("127.0.0.1", server.port()).get(),
                                                "GET /readyz HTTP/1.0\r\n\r\n");
    EXPECT_EQ(http_status(not_ready), 503) << not_ready;
    server.set_ready();
    const std::string ready = http_exchange(http_connect("127.0.0.1", server.port()).get(),
                                            "GET /readyz HTTP/1.0\r\n\r\n");
    EXPECT_EQ(http_status(ready), 200) << ready;
    const std::string metrics = http_exchange(http_connect("127.0.0.1", server.port()).get(),
                                              "GET /metrics HTTP/1.0\r\n\r\n");
    EXPECT_EQ(http_status(metrics), 200) << metrics;
    EXPECT_NE(metrics.find("\r\n\r\nudpring_x 1\n"), std::string::npos) << metrics;
    // Answered beside the crowd, not after it: every client is still held
    // (once the server has counted the last probe's close, just after it).
    EXPECT_TRUE(wait_for([&] { return server.connections() == all; }, milliseconds(500)))
        << server.connections() << " open, not the " << all << " of the crowd";
  });
}

// With the daemon's deadlines (idle 2 s, lifetime 5 s): the silent clients
// go after the idle timeout, the trickling ones at the end of their lifetime.
TEST(HealthServer, DropsTheCrowdAtTheDeadlines) {
  UDPRING_REQUIRE_INTEGRATION();
  ASSERT_NO_FATAL_FAILURE(raise_fd_limit());
  Netns ns(ns_name("b"));
  run_in_netns(ns.name(), [&] {
    const io::HttpLimits defaults;
    ASSERT_EQ(defaults.idle, std::chrono::seconds(2));
    ASSERT_EQ(defaults.lifetime, milliseconds(5000));
    io::HttpServer server(*core::parse_ipv4("127.0.0.1"), 0, [] { return std::string(); });
    const auto start = steady_clock::now();
    Crowd crowd = gather(server.port());
    Trickle trickle(crowd.slow);
    const size_t all = kIdleClients + kSlowClients;
    ASSERT_TRUE(wait_for([&] { return server.connections() == all; }, milliseconds(1500)))
        << server.connections() << " of " << all << " clients accepted";
    // The silent ones: closed after 2 s, not before 1.5 s.
    ASSERT_TRUE(wait_for([&] { return server.connections() <= size_t{kSlowClients}; }, milliseconds(4000)))
        << server.connections() << " still open";
    const auto idle_gone = steady_clock::now() - start;
    EXPECT_GE(idle_gone, milliseconds(1500));
    for (auto& c : crowd.idle) EXPECT_TRUE(closed_by_server(c.get(), 100));
    EXPECT_EQ(server.connections(), size_t{kSlowClients}) << "trickling clients went with the idle ones";
    // The trickling ones: at their lifetime's end, however busy they are.
    ASSERT_TRUE(wait_for([&] { return server.connections() == 0; }, milliseconds(5000)))
        << server.connections() << " still open";
    const auto slow_gone = steady_clock::now() - start;
    EXPECT_GE(slow_gone, milliseconds(4500));
    EXPECT_LT(slow_gone, milliseconds(7000));
    EXPECT_EQ(http_status(http_exchange(http_connect("127.0.0.1", server.port()).get(),
                                        "GET /healthz HTTP/1.0\r\n\r\n")),
              200);
  });
}

// The same crowd at udpringd's own server (its default limits), while it
// runs in the two-node topology.
TEST(HealthServer, TheDaemonAnswersEveryProbeQuicklyWhileHundredsOfClientsHang) {
  UDPRING_REQUIRE_INTEGRATION();
  ASSERT_NO_FATAL_FAILURE(raise_fd_limit());  // the daemon inherits it: caps 1024, 256 per address
  Topology topo;
  auto d1 = start_udpringd(topo, 1, {"--workers=1", "--healthz-ip=127.0.0.1", "--healthz-port=9110"});
  const size_t all = kIdleClients + kSlowClients;
  run_in_netns(topo.n1.name(), [&] {
    Crowd crowd = gather(9110);
    Trickle trickle(crowd.slow);
    // Held by the daemon, not waiting in its listen queue: all connected
    // and the queue (a listening socket's Recv-Q, in `ss`) empty.
    const auto connected = [] {
      return std::stoul(sh_out("ss -Htn state established '( sport = :9110 )' | wc -l"));
    };
    const auto queued = [] {
      return std::stoul(sh_out("ss -Hltn '( sport = :9110 )' | awk '{ print $2 }'"));
    };
    EXPECT_TRUE(wait_for([&] { return connected() >= all && queued() == 0; }, milliseconds(1000)))
        << connected() << " of " << all << " clients connected, " << queued() << " not accepted";
    // Quicker than above: the daemon's idle timeout (2 s) would start
    // dropping the silent clients.
    expect_every_probe_quick(9110, milliseconds(20));
    const std::string ready = http_exchange(http_connect("127.0.0.1", 9110).get(), "GET /readyz HTTP/1.0\r\n\r\n");
    EXPECT_EQ(http_status(ready), 200) << ready;
  });
  EXPECT_TRUE(d1->running()) << d1->log();
  EXPECT_EQ(d1->stop(), 0) << d1->log();
}

}  // namespace
}  // namespace udpring::test
