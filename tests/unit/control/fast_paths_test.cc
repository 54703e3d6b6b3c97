// The fast-path report: /metrics text and the once-per-worker fallback log.

#include "io/control/fast_paths.h"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <gtest/gtest.h>

#include <sstream>

#include "tests/support/count_of.h"

namespace udpring::io {
namespace {

using test::count_of;

TEST(FastPaths, MetricsTellGrantedFromRefused) {
  const std::string m = render_fast_paths({{"gso", true, true},
                                           {"tun_steering", true, false},
                                           {"send_zc", false, false}});
  EXPECT_NE(m.find("udpring_fast_path{path=\"gso\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("udpring_fast_path{path=\"tun_steering\"} 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("udpring_fast_path_refused{path=\"tun_steering\"} 1\n"), std::string::npos) << m;
  // Off by flag is not a refusal.
  EXPECT_NE(m.find("udpring_fast_path_refused{path=\"send_zc\"} 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("udpring_fast_path_refused{path=\"gso\"} 0\n"), std::string::npos) << m;
  EXPECT_EQ(count_of(m, "# TYPE "), 2u) << m;
}

// Workers count their fallbacks; the control thread logs each worker's
// first of each kind, and only once however often the counters grow.
TEST(FastPaths, RuntimeFallbacksAreLoggedOncePerWorker) {
  std::ostringstream out;
  auto logger = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  std::vector<std::unique_ptr<core::WorkerStats>> stats;
  stats.push_back(std::make_unique<core::WorkerStats>());
  stats.push_back(std::make_unique<core::WorkerStats>());
  RuntimeFallbackLog log(stats.size());
  log.check(stats);
  EXPECT_EQ(out.str(), "");
  stats[1]->add(core::Counter::kGsoFallback);
  log.check(stats);
  stats[1]->add(core::Counter::kGsoFallback);
  stats[0]->add(core::Counter::kSendZcFallback);
  log.check(stats);
  log.check(stats);
  spdlog::set_default_logger(previous);
  const std::string text = out.str();
  EXPECT_EQ(count_of(text, "worker 1: a UDP GSO send failed with EIO"), 1u) << text;
  EXPECT_EQ(count_of(text, "worker 0: a zero-copy send was refused"), 1u) << text;
  EXPECT_EQ(count_of(text, "GSO send failed"), 1u) << text;
  EXPECT_EQ(count_of(text, "zero-copy send was refused"), 1u) << text;
}

}  // namespace
}  // namespace udpring::io
