// udpringd: entry point. Parses flags, sets up logging, runs the daemon.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <thread>

#include "io/daemon/daemon.h"
#include "io/kernel/features.h"
#include "io/daemon/options.h"

#ifndef UDPRING_VERSION
#define UDPRING_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  using namespace udpring::io;
  Options opts;
  try {
    opts = parse_options(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "udpringd: %s\n", e.what());
    return 2;
  }
  if (opts.help) {
    std::fputs(usage_text().c_str(), stdout);
    return 0;
  }
  if (opts.help_markdown) {
    std::fputs(flags_markdown().c_str(), stdout);
    return 0;
  }
  if (opts.print_config) {
    std::fputs(describe_options(opts, std::thread::hardware_concurrency()).c_str(), stdout);
    std::fputs(probe_kernel_features().c_str(), stdout);
    return 0;
  }
  if (opts.version) {
    std::printf("udpringd %s\n", UDPRING_VERSION);
    return 0;
  }
  auto logger = spdlog::stderr_color_mt("udpringd");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ %v");
  spdlog::set_level(opts.verbosity >= 2   ? spdlog::level::trace
                    : opts.verbosity == 1 ? spdlog::level::debug
                                          : spdlog::level::info);
  spdlog::flush_on(spdlog::level::trace);
  spdlog::info("udpringd {} starting", UDPRING_VERSION);
  return run_daemon(opts);
}
