// The /metrics text's control-plane input errors and error completions.

#include "io/control/metrics.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <vector>

namespace udpring::io {
namespace {

TEST(Metrics, InputErrorsHaveOneSamplePerSource) {
  core::InputErrors errors;
  errors.count(core::InputSource::kEtcd);
  errors.count(core::InputSource::kEtcd);
  errors.count(core::InputSource::kConfig);
  const std::string m = render_input_errors(errors.values());
  EXPECT_NE(m.find("# TYPE udpring_control_input_errors_total counter\n"), std::string::npos) << m;
  EXPECT_NE(m.find("udpring_control_input_errors_total{source=\"config\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("udpring_control_input_errors_total{source=\"etcd\"} 2\n"), std::string::npos) << m;
  EXPECT_NE(m.find("udpring_control_input_errors_total{source=\"file\"} 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("udpring_control_input_errors_total{source=\"kube\"} 0\n"), std::string::npos) << m;
  // And in the full page.
  MetricsInput in;
  in.input_errors = errors.values();
  const std::string page = render_metrics({}, in, {}, "test");
  EXPECT_NE(page.find("udpring_control_input_errors_total{source=\"etcd\"} 2\n"), std::string::npos);
}

// Summed over workers, one sample per op and errno seen, with the class
// the worker gave it; none for what never happened.
TEST(Metrics, CompletionErrorsByOpErrnoAndClass) {
  std::vector<std::unique_ptr<core::WorkerStats>> stats;
  stats.push_back(std::make_unique<core::WorkerStats>());
  stats.push_back(std::make_unique<core::WorkerStats>());
  stats[0]->add_error(core::CompletionOp::kTunRead, EBADFD);
  stats[1]->add_error(core::CompletionOp::kTunRead, EBADFD);
  stats[1]->add_error(core::CompletionOp::kUdpSend, ECONNREFUSED);
  stats[1]->add_error(core::CompletionOp::kUdpRecv, EOVERFLOW);
  const std::string page = render_metrics(stats, {}, {}, "test");
  EXPECT_NE(page.find("udpring_completion_errors_total{op=\"tun_read\",errno=\"EBADFD\",class=\"fatal\"} 2\n"),
            std::string::npos) << page;
  EXPECT_NE(page.find("udpring_completion_errors_total{op=\"udp_send\",errno=\"ECONNREFUSED\",class=\"peer\"} 1\n"),
            std::string::npos) << page;
  EXPECT_NE(page.find("udpring_completion_errors_total{op=\"udp_recv\",errno=\"other\",class=\"unknown\"} 1\n"),
            std::string::npos) << page;
  EXPECT_EQ(page.find("op=\"tun_write\""), std::string::npos) << page;
}

}  // namespace
}  // namespace udpring::io
