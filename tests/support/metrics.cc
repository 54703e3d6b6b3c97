#include "tests/support/metrics.h"

#include <cstdlib>

namespace udpring::test {

std::optional<double> metric_value(const std::string& metrics, const std::string& sample) {
  const std::string key = sample + " ";
  size_t at = metrics.compare(0, key.size(), key) == 0 ? 0 : std::string::npos;
  if (at == std::string::npos) {
    at = metrics.find("\n" + key);
    if (at == std::string::npos) return std::nullopt;
    ++at;
  }
  const char* value = metrics.c_str() + at + key.size();
  char* end = nullptr;
  const double v = std::strtod(value, &end);
  if (end == value) return std::nullopt;
  return v;
}

long long metric(const std::string& metrics, const std::string& sample) {
  const std::optional<double> v = metric_value(metrics, sample);
  return v ? static_cast<long long>(*v) : -1;
}

long long worker_metric(const std::string& metrics, const std::string& name, int worker) {
  return metric(metrics, name + "{worker=\"" + std::to_string(worker) + "\"}");
}

}  // namespace udpring::test
