// The lease refusals in /metrics: both families, every reason listed (also
// at 0, so that each can be alerted on), the values where they belong.

#include <gtest/gtest.h>

#include "core/lease_policy.h"
#include "io/control/metrics.h"

namespace udpring::io {
namespace {

TEST(LeaseRefusalMetrics, EveryReasonOfBothFamilies) {
  MetricsInput in;
  in.leases_refused_total[static_cast<size_t>(core::LeaseRefusal::kWrongLength)] = 7;
  in.leases_refused_total[static_cast<size_t>(core::LeaseRefusal::kOverlap)] = 2;
  in.leases_refused_now[static_cast<size_t>(core::LeaseRefusal::kOverlap)] = 1;
  const std::string m = render_metrics({}, in, {}, "test");
  EXPECT_NE(m.find("# TYPE udpring_leases_refused_total counter\n"), std::string::npos) << m;
  EXPECT_NE(m.find("# TYPE udpring_leases_refused_current gauge\n"), std::string::npos) << m;
  EXPECT_NE(m.find("udpring_leases_refused_total{reason=\"wrong_length\"} 7\n"), std::string::npos);
  EXPECT_NE(m.find("udpring_leases_refused_total{reason=\"overlap\"} 2\n"), std::string::npos);
  EXPECT_NE(m.find("udpring_leases_refused_current{reason=\"overlap\"} 1\n"), std::string::npos);
  EXPECT_NE(m.find("udpring_leases_refused_current{reason=\"wrong_length\"} 0\n"), std::string::npos);
  for (size_t i = 0; i < core::kLeaseRefusalCount; ++i) {
    const std::string reason(core::refusal_name(static_cast<core::LeaseRefusal>(i)));
    EXPECT_NE(m.find("udpring_leases_refused_total{reason=\"" + reason + "\"} "), std::string::npos)
        << reason;
    EXPECT_NE(m.find("udpring_leases_refused_current{reason=\"" + reason + "\"} "),
              std::string::npos)
        << reason;
  }
}

}  // namespace
}  // namespace udpring::io
