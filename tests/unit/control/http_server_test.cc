// The health/metrics server on 127.0.0.1 with a real socket (no root needed):
// its answers, and what it does to clients that ask too much of it. The
// stall test with hundreds of clients is tests/integration/health_server_test.cc.

#include "io/control/http_server.h"

#include <sys/resource.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <new>
#include <thread>
#include <vector>

#include "core/ipv4_addr.h"
#include "tests/support/http_client.h"
#include "tests/support/traffic.h"

namespace udpring {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

core::Be32 loopback() { return *core::parse_ipv4("127.0.0.1"); }

std::string get(uint16_t port, const std::string& request, const std::string& from = "127.0.0.1") {
  core::UniqueFd c = test::http_connect(from, port);
  return test::http_exchange(c.get(), request);
}

// The server counts a close just after the client sees it: wait for the
// count to settle, up to 500 ms.
bool connections_become(const io::HttpServer& server, size_t n) {
  const auto end = steady_clock::now() + milliseconds(500);
  while (server.connections() != n) {
    if (steady_clock::now() > end) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

// The body of a whole response, after the blank line.
std::string body_of(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : response.substr(end + 4);
}

TEST(HttpServer, AnswersHealthReadinessAndMetrics) {
  std::atomic<int> renders{0};
  io::HttpServer server(loopback(), 0, [&] {
    ++renders;
    return std::string("udpring_test_total 7\n");
  });
  ASSERT_NE(server.port(), 0);
  const std::string health = test::http_get("", server.port(), "/healthz");
  EXPECT_EQ(health.rfind("HTTP/1.0 200", 0), 0u) << health;
  EXPECT_EQ(body_of(health), "udpringd is running\n");
  const std::string not_ready = test::http_get("", server.port(), "/readyz");
  EXPECT_EQ(not_ready.rfind("HTTP/1.0 503", 0), 0u) << not_ready;
  server.set_ready();
  const std::string ready = test::http_get("", server.port(), "/readyz");
  EXPECT_EQ(ready.rfind("HTTP/1.0 200", 0), 0u) << ready;
  const std::string metrics = test::http_get("", server.port(), "/metrics");
  EXPECT_EQ(metrics.rfind("HTTP/1.0 200", 0), 0u) << metrics;
  EXPECT_NE(metrics.find("\r\nContent-Type: text/plain; version=0.0.4\r\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\r\n\r\nudpring_test_total 7\n"), std::string::npos) << metrics;
  EXPECT_EQ(renders.load(), 1);
  EXPECT_EQ(test::http_get("", server.port(), "/nope").rfind("HTTP/1.0 404", 0), 0u);
  // An HTTP/1.1 client (kubelet's) gets the same, and the connection closed.
  const std::string v11 = get(server.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(test::http_status(v11), 200) << v11;
  EXPECT_NE(v11.find("\r\nConnection: close\r\n"), std::string::npos) << v11;
}

TEST(HttpServer, RefusesAPortInUseWithTheAddressNamed) {
  io::HttpServer first(loopback(), 0, [] { return std::string(); });
  try {
    io::HttpServer second(loopback(), first.port(), [] { return std::string(); });
    FAIL() << "bound a port that is in use";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EADDRINUSE) << e.what();
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.port())),
              std::string::npos)
        << e.what();
  }
}

TEST(HttpServer, RefusesAnAddressNotOfThisHostWithTheAddressNamed) {
  try {
    io::HttpServer server(*core::parse_ipv4("203.0.113.7"), 9102, [] { return std::string(); });
    FAIL() << "bound an address of no interface";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EADDRNOTAVAIL) << e.what();
    EXPECT_NE(std::string(e.what()).find("203.0.113.7:9102"), std::string::npos) << e.what();
  }
}

TEST(HttpServer, AnswersHeadWithoutABodyAndRefusesOtherMethods) {
  io::HttpServer server(loopback(), 0, [] { return std::string(); });
  const std::string head = get(server.port(), "HEAD /healthz HTTP/1.0\r\n\r\n");
  EXPECT_EQ(test::http_status(head), 200) << head;
  EXPECT_EQ(body_of(head), "") << head;
  for (const char* method : {"POST", "PUT", "DELETE", "BREW"}) {
    const std::string r = get(server.port(), std::string(method) + " /healthz HTTP/1.0\r\n\r\n");
    EXPECT_EQ(test::http_status(r), 405) << method << ": " << r;
    EXPECT_NE(r.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << method << ": " << r;
  }
}

TEST(HttpServer, RefusesARequestBody) {
  io::HttpServer server(loopback(), 0, [] { return std::string(); });
  const std::string sized = get(server.port(), "GET /healthz HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(test::http_status(sized), 413) << sized;
  const std::string chunked = get(server.port(),
                                  "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(test::http_status(chunked), 413) << chunked;
  const std::string empty = get(server.port(), "GET /healthz HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(test::http_status(empty), 200) << empty;
}

// The request line and headers have 16 KiB; 64 KiB of header is refused
// with a status (or, at worst, a close), never a hang, and the next client
// is served.
TEST(HttpServer, AnswersAnOversizeHeaderWithAnErrorAndKeepsServing) {
  io::HttpServer server(loopback(), 0, [] { return std::string(); });
  core::UniqueFd c = test::http_connect("127.0.0.1", server.port());
  const auto start = steady_clock::now();
  const std::string r = test::http_exchange(
      c.get(), "GET /healthz HTTP/1.0\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n", 3000);
  EXPECT_LT(steady_clock::now() - start, milliseconds(2000)) << "the server held an oversize request";
  const int status = test::http_status(r);
  EXPECT_TRUE(status == 431 || (status == 0 && r.empty())) << r.substr(0, 200);
  const std::string line = get(server.port(), "GET /" + std::string(20 * 1024, 'a') + " HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(test::http_status(line) == 414 || line.empty()) << line.substr(0, 200);
  EXPECT_EQ(test::http_status(get(server.port(), "GET /healthz HTTP/1.0\r\n\r\n")), 200);
}

TEST(HttpServer, ClosesAnIdleConnectionAfterTheIdleTimeout) {
  io::HttpServer server(loopback(), 0, [] { return std::string(); },
                        {.idle = std::chrono::seconds(1), .lifetime = milliseconds(10000)});
  core::UniqueFd c = test::http_connect("127.0.0.1", server.port());
  const auto start = steady_clock::now();
  EXPECT_FALSE(test::closed_by_server(c.get(), 500)) << "closed well before the idle timeout";
  EXPECT_TRUE(test::closed_by_server(c.get(), 3000)) << "an idle connection outlived its timeout";
  EXPECT_GE(steady_clock::now() - start, milliseconds(900));
  EXPECT_TRUE(connections_become(server, 0)) << server.connections();
}

// A client that sends a byte every 100 ms is never idle; its lifetime
// (1 s, shorter than the 5 s idle timeout here) ends it anyway.
TEST(HttpServer, ClosesATricklingClientAtTheEndOfItsLifetime) {
  io::HttpServer server(loopback(), 0, [] { return std::string(); },
                        {.idle = std::chrono::seconds(5), .lifetime = milliseconds(1000)});
  core::UniqueFd c = test::http_connect("127.0.0.1", server.port());
  const auto start = steady_clock::now();
  const std::string request = "GET /healthz HTTP/1.0\r\nX-Slow: " + std::string(100, 'a');
  bool closed = false;
  for (size_t i = 0; i < request.size() && !closed; ++i) {
    if (send(c.get(), &request[i], 1, MSG_NOSIGNAL) != 1) break;  // reset: closed
    closed = test::closed_by_server(c.get(), 100);
  }
  if (!closed) closed = test::closed_by_server(c.get(), 100);
  const auto took = steady_clock::now() - start;
  EXPECT_TRUE(closed) << "a trickling client outlived its lifetime";
  EXPECT_GE(took, milliseconds(900));
  EXPECT_LT(took, milliseconds(3000));
}

// A request cut short by the client's end of stream, in the middle of a
// header line (as in tests/fuzz/corpus/http/cut-request-*),
// is closed at the end of its lifetime at the latest, whether its last bytes
// and the end of stream come in one read or two, and the next client is
// served. Rounds repeat it, as the fuzz target does, with a probe between.
TEST(HttpServer, ClosesARequestCutShortByTheClientAndServesTheNext) {
  io::HttpServer server(loopback(), 0, [] { return std::string(); },
                        {.idle = std::chrono::seconds(5), .lifetime = milliseconds(1000)});
  const std::string cut = "HEAD /heaGET /readyz HTTP/1.1\r\nHost: 270.1.0.1\r\nUslthz He0P/1rT";
  for (int round = 0; round < 3; ++round) {
    core::UniqueFd c = test::http_connect("127.0.0.1", server.port());
    const auto start = steady_clock::now();
    ASSERT_EQ(send(c.get(), cut.data(), cut.size(), MSG_NOSIGNAL), static_cast<ssize_t>(cut.size()));
    if (round == 1) std::this_thread::sleep_for(milliseconds(50));  // the end of stream in a read of its own
    shutdown(c.get(), SHUT_WR);
    EXPECT_TRUE(test::closed_by_server(c.get(), 2500)) << "round " << round;
    EXPECT_LT(steady_clock::now() - start, milliseconds(2000)) << "round " << round;
    EXPECT_EQ(test::http_status(get(server.port(), "GET /healthz HTTP/1.0\r\n\r\n")), 200);
  }
  EXPECT_TRUE(connections_become(server, 0)) << server.connections();
}

// 12 connections from one address with 8 allowed: the 4 over are closed
// at once, and so is a probe from there; a probe from elsewhere is served.
TEST(HttpServer, CapsConnectionsPerAddress) {
  io::HttpServer server(loopback(), 0, [] { return std::string(); },
                        {.idle = std::chrono::seconds(30), .lifetime = milliseconds(30000),
                         .connections = 64, .per_address = 8});
  std::vector<core::UniqueFd> held;
  for (int i = 0; i < 12; ++i) held.push_back(test::http_connect("127.0.0.2", server.port()));
  int closed = 0;
  for (auto& c : held) closed += test::closed_by_server(c.get(), 150) ? 1 : 0;
  EXPECT_EQ(closed, 4);
  EXPECT_TRUE(connections_become(server, 8)) << server.connections();
  EXPECT_NE(test::http_status(get(server.port(), "GET /healthz HTTP/1.0\r\n\r\n", "127.0.0.2")), 200);
  EXPECT_EQ(test::http_status(get(server.port(), "GET /healthz HTTP/1.0\r\n\r\n", "127.0.0.1")), 200);
}

// At the cap a new client waits in the listen queue, and is served as soon
// as a connection goes (here the first idle one, after 1 s).
TEST(HttpServer, ServesAWaitingClientOnceAConnectionCloses) {
  io::HttpServer server(loopback(), 0, [] { return std::string(); },
                        {.idle = std::chrono::seconds(1), .lifetime = milliseconds(30000),
                         .connections = 4, .per_address = 4});
  std::vector<core::UniqueFd> held;
  for (int i = 0; i < 4; ++i) held.push_back(test::http_connect("127.0.0.2", server.port()));
  ASSERT_FALSE(test::closed_by_server(held.back().get(), 100));
  ASSERT_TRUE(connections_become(server, 4)) << server.connections();
  const auto start = steady_clock::now();
  const std::string r = get(server.port(), "GET /healthz HTTP/1.0\r\n\r\n");
  const auto took = steady_clock::now() - start;
  EXPECT_EQ(test::http_status(r), 200) << r;
  EXPECT_GE(took, milliseconds(700)) << "served beyond the cap";
  EXPECT_LT(took, milliseconds(1800)) << "not served when the idle ones went";
}

// Half the soft descriptor limit, at most 1024; a quarter of that per address.
TEST(HttpServer, TakesItsDefaultCapsFromTheDescriptorLimit) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_GE(saved.rlim_max, 600u) << "the test needs a hard RLIMIT_NOFILE of 600";
  rlimit low = saved;
  low.rlim_cur = 600;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  {
    io::HttpServer server(loopback(), 0, [] { return std::string(); });
    EXPECT_EQ(server.limits().connections, 300u);
    EXPECT_EQ(server.limits().per_address, 75u);
  }
  if (saved.rlim_max >= 4096) {
    rlimit high = saved;
    high.rlim_cur = 4096;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &high), 0);
    io::HttpServer server(loopback(), 0, [] { return std::string(); });
    EXPECT_EQ(server.limits().connections, 1024u);
    EXPECT_EQ(server.limits().per_address, 256u);
  }
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

TEST(HttpServer, AnswersAFailedRenderWith500AndKeepsServing) {
  io::HttpServer server(loopback(), 0, []() -> std::string { throw std::bad_alloc(); });
  EXPECT_EQ(test::http_status(get(server.port(), "GET /metrics HTTP/1.0\r\n\r\n")), 500);
  EXPECT_EQ(test::http_status(get(server.port(), "GET /healthz HTTP/1.0\r\n\r\n")), 200);
}

}  // namespace
}  // namespace udpring
