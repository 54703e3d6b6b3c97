#pragma once
// YAML text as JSON values, read with Debian's libyaml: kubeconfigs are
// YAML, and the kube store works on JSON. Scalars become strings (a
// kubeconfig's `true` is the string "true"), except plain `~`, `null` and
// empty values, which become null. Anchors and aliases are resolved, up to
// 64 levels deep and 100,000 nodes per document, so that an alias bomb is
// an error, not a daemon out of memory.

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace udpring::io {

class YamlError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Every document of `text`, in order. Throws YamlError with the line and
/// libyaml's reason when it is not YAML.
std::vector<nlohmann::json> yaml_documents(const std::string& text);

}  // namespace udpring::io
