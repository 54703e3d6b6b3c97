#pragma once
// Every Kubernetes API call the kube lease store makes, as the RBAC rule
// that allows it. deploy/kube-udpring.yml's ClusterRole grants exactly
// these (a test checks it), and a 403 names the rule that is missing.

#include <array>
#include <string_view>

namespace udpring::io {

struct KubePermission {
  std::string_view resource;  // in the core API group ("")
  std::string_view verb;
  std::string_view why;
};

inline constexpr std::array<KubePermission, 5> kKubePermissions = {{
    {"pods", "get", "finding this node's name from POD_NAME when NODE_NAME is unset"},
    {"nodes", "get", "reading this node's podCIDR and annotations"},
    {"nodes", "list", "listing the peers"},
    {"nodes", "watch", "following the peers"},
    {"nodes/status", "patch", "writing this node's annotations and NetworkUnavailable condition"},
}};

/// The ClusterRole (deploy/kube-udpring.yml) a 403 asks to fix.
inline constexpr std::string_view kKubeClusterRole = "flannel";

}  // namespace udpring::io
