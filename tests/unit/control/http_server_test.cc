// The health/metrics server on 127.0.0.1 with a real socket (no root needed).

#include "io/control/http_server.h"

#include <gtest/gtest.h>

#include <atomic>

#include "core/ipv4_addr.h"
#include "tests/support/traffic.h"

namespace udpring {
namespace {

TEST(HttpServer, AnswersHealthReadinessAndMetrics) {
  std::atomic<int> renders{0};
  io::HttpServer server(*core::parse_ipv4("127.0.0.1"), 0, [&] {
    ++renders;
    return std::string("udpring_test_total 7\n");
  });
  ASSERT_NE(server.port(), 0);
  const std::string health = test::http_get("", server.port(), "/healthz");
  EXPECT_EQ(health.rfind("HTTP/1.0 200", 0), 0u) << health;
  const std::string not_ready = test::http_get("", server.port(), "/readyz");
  EXPECT_EQ(not_ready.rfind("HTTP/1.0 503", 0), 0u) << not_ready;
  server.set_ready();
  const std::string ready = test::http_get("", server.port(), "/readyz");
  EXPECT_EQ(ready.rfind("HTTP/1.0 200", 0), 0u) << ready;
  const std::string metrics = test::http_get("", server.port(), "/metrics");
  EXPECT_EQ(metrics.rfind("HTTP/1.0 200", 0), 0u) << metrics;
  EXPECT_NE(metrics.find("\r\n\r\nudpring_test_total 7\n"), std::string::npos) << metrics;
  EXPECT_EQ(renders.load(), 1);
  EXPECT_EQ(test::http_get("", server.port(), "/nope").rfind("HTTP/1.0 404", 0), 0u);
}

TEST(HttpServer, RefusesAPortInUseWithTheAddressNamed) {
  io::HttpServer first(*core::parse_ipv4("127.0.0.1"), 0, [] { return std::string(); });
  try {
    io::HttpServer second(*core::parse_ipv4("127.0.0.1"), first.port(), [] { return std::string(); });
    FAIL() << "bound a port that is in use";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.port())),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace udpring
