// The /metrics text's control-plane input errors.

#include "io/control/metrics.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace udpring::io
