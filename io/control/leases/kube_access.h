#pragma once
// How to reach the Kubernetes API server, resolved as flanneld (client-go)
// does from --kube-api-url and --kubeconfig-file:
//   neither      in-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
//                with the service account's token and ca.crt;
//   a kubeconfig its current-context's cluster and user (--kube-api-url,
//                if also given, replaces the cluster's server);
//   only the URL that server, with the service account's credentials when
//                they are mounted, else none.
// Errors name the file, the field and the fix.

#include <functional>
#include <stdexcept>
#include <string>

#include "io/control/leases/http_transfer.h"

namespace udpring::io {

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

struct KubeAccess {
  std::string server;      // https://host:port, no trailing '/'
  TlsOptions tls;
  std::string token;       // a fixed bearer token
  std::string token_file;  // or one re-read when it changes (projected tokens rotate)
  std::string basic_auth;  // "user:password" (old kubeconfigs)
  std::string source;      // for logs and errors: "in-cluster", "kubeconfig F (context C)"
};

/// A kubeconfig or the in-cluster setup cannot be used; final (no retry).
class KubeAccessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using KubeEnv = std::function<const char*(const char*)>;

KubeAccess resolve_kube_access(const std::string& api_url, const std::string& kubeconfig,
                               const KubeEnv& env,
                               const std::string& service_account_dir = kServiceAccountDir);

/// A kubeconfig's current context (YAML `text`, read from `path`, against
/// which relative file names resolve).
KubeAccess parse_kubeconfig(const std::string& path, const std::string& text);

}  // namespace udpring::io
