#pragma once
// The one reader of the Prometheus text udpringd serves on /metrics, for
// every test that checks a counter there. It takes the body alone or the
// whole HTTP response (as http_get returns it).

#include <optional>
#include <string>

namespace udpring::test {

/// Value of `sample` in `metrics`: a metric name with its labels written as
/// udpringd writes them (`udpring_routes`, `udpring_fast_path{path="gso"}`),
/// taken from the line that starts with it and a space; nullopt if no line does.
std::optional<double> metric_value(const std::string& metrics, const std::string& sample);

/// metric_value as an integer (counters and gauges of whole numbers), -1 if absent.
long long metric(const std::string& metrics, const std::string& sample);

/// The per-worker sample NAME{worker="W"}, -1 if absent.
long long worker_metric(const std::string& metrics, const std::string& name, int worker);

}  // namespace udpring::test
