#include "io/control/leases/kube_access.h"

#include <unistd.h>

#include "core/base64.h"
#include "io/control/leases/small_file.h"
#include "io/control/leases/yaml_json.h"

namespace udpring::io {
namespace {

bool readable(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

// A kubeconfig with a few clusters and their certificates is some 10 KiB.
constexpr size_t kMaxKubeconfigBytes = size_t{1} << 20;

std::string read_text(const std::string& path, const std::string& what) {
  std::optional<SmallFile> f;
  try {
    f = read_small_file(path, kMaxKubeconfigBytes, Symlinks::kFollow);
  } catch (const FileInputError& e) {
    throw KubeAccessError(what + ": " + e.what());
  }
  if (!f) throw KubeAccessError("cannot read " + what + " " + path + ": it does not exist");
  return std::move(f->text);
}

std::string strip_slash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

using Json = nlohmann::json;

// The entry of a kubeconfig list (clusters, users, contexts) named `name`.
Json named(const Json& doc, const std::string& list, const std::string& name,
           const std::string& path) {
  const auto items = doc.find(list);
  if (items != doc.end() && items->is_array()) {
    for (const Json& item : *items) {
      if (item.is_object() && item.value("name", Json()).is_string() && item["name"] == name) {
        const auto body = item.find(list.substr(0, list.size() - 1));  // "clusters" -> "cluster"
        return body != item.end() && body->is_object() ? *body : Json::object();
      }
    }
  }
  throw KubeAccessError(path + ": no entry named \"" + name + "\" in " + list);
}

std::string field(const Json& n, const char* key) {
  const auto v = n.find(key);
  return v != n.end() && v->is_string() ? v->get<std::string>() : std::string();
}

// A *-data field: base64 of PEM text.
std::string pem_data(const Json& n, const char* key, const std::string& path) {
  const std::string b64 = field(n, key);
  if (b64.empty()) return {};
  auto pem = core::base64_decode(b64);
  if (!pem) throw KubeAccessError(path + ": " + key + " is not base64");
  return *pem;
}

std::string relative_to(const std::string& file, const std::string& kubeconfig) {
  if (file.empty() || file.front() == '/') return file;
  const size_t slash = kubeconfig.rfind('/');
  return slash == std::string::npos ? file : kubeconfig.substr(0, slash + 1) + file;
}

}  // namespace

KubeAccess parse_kubeconfig(const std::string& path, const std::string& text) {
  Json doc;
  try {
    const std::vector<Json> docs = yaml_documents(text);
    if (!docs.empty()) doc = docs.front();
  } catch (const YamlError& e) {
    throw KubeAccessError(path + ": not YAML: " + e.what());
  }
  if (!doc.is_object()) throw KubeAccessError(path + ": not a kubeconfig (expected a YAML map)");
  const std::string context = field(doc, "current-context");
  if (context.empty()) {
    throw KubeAccessError(path + ": no current-context (set one: kubectl config use-context NAME)");
  }
  const Json ctx = named(doc, "contexts", context, path);
  const Json cluster = named(doc, "clusters", field(ctx, "cluster"), path);
  const std::string user_name = field(ctx, "user");
  const Json user = user_name.empty() ? Json::object() : named(doc, "users", user_name, path);
  KubeAccess a;
  a.source = "kubeconfig " + path + " (context " + context + ")";
  a.server = strip_slash(field(cluster, "server"));
  a.tls.ca_pem = pem_data(cluster, "certificate-authority-data", path);
  if (a.tls.ca_pem.empty()) a.tls.ca_file = relative_to(field(cluster, "certificate-authority"), path);
  a.tls.skip_verify = field(cluster, "insecure-skip-tls-verify") == "true";
  a.tls.cert_pem = pem_data(user, "client-certificate-data", path);
  if (a.tls.cert_pem.empty()) a.tls.cert_file = relative_to(field(user, "client-certificate"), path);
  a.tls.key_pem = pem_data(user, "client-key-data", path);
  if (a.tls.key_pem.empty()) a.tls.key_file = relative_to(field(user, "client-key"), path);
  a.token = field(user, "token");
  a.token_file = relative_to(field(user, "tokenFile"), path);
  const std::string username = field(user, "username");
  if (!username.empty()) a.basic_auth = username + ":" + field(user, "password");
  if (user.contains("exec") || user.contains("auth-provider")) {
    throw KubeAccessError(path + ": user \"" + user_name +
                          "\" authenticates with an exec plugin or auth-provider, which udpringd "
                          "does not run; give it a token, tokenFile or client certificate");
  }
  if ((a.tls.cert_pem.empty() && a.tls.cert_file.empty()) !=
      (a.tls.key_pem.empty() && a.tls.key_file.empty())) {
    throw KubeAccessError(path + ": user \"" + user_name +
                          "\" has a client certificate without its key, or a key without its "
                          "certificate");
  }
  return a;
}

KubeAccess resolve_kube_access(const std::string& api_url, const std::string& kubeconfig,
                               const KubeEnv& env, const std::string& service_account_dir) {
  KubeAccess a;
  if (!kubeconfig.empty()) {
    a = parse_kubeconfig(kubeconfig, read_text(kubeconfig, "--kubeconfig-file"));
    if (!api_url.empty()) a.server = strip_slash(api_url);
  } else {
    const std::string token = service_account_dir + "/token";
    const std::string ca = service_account_dir + "/ca.crt";
    const bool mounted = readable(token);
    if (!api_url.empty()) {
      a.server = strip_slash(api_url);
      a.source = "--kube-api-url";
    } else {
      const char* host = env("KUBERNETES_SERVICE_HOST");
      const char* port = env("KUBERNETES_SERVICE_PORT");
      if (!host || !*host || !port || !*port) {
        throw KubeAccessError(
            "--kube-subnet-mgr: not in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
            "are unset) and neither --kubeconfig-file nor --kube-api-url is given");
      }
      const std::string h = host;
      a.server = "https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port;
      a.source = "in-cluster";
      if (!mounted) {
        throw KubeAccessError("in-cluster: no service-account token at " + token +
                              " (the pod needs serviceAccountName and "
                              "automountServiceAccountToken left true)");
      }
    }
    if (mounted) {
      a.token_file = token;
      if (readable(ca)) a.tls.ca_file = ca;
      if (a.source == "--kube-api-url") a.source += " with the service account at " + service_account_dir;
    }
  }
  if (a.server.empty()) throw KubeAccessError(a.source + ": no API server URL (cluster.server)");
  if (a.server.rfind("https://", 0) != 0 && a.server.rfind("http://", 0) != 0) {
    throw KubeAccessError(a.source + ": API server \"" + a.server +
                          "\" is not an http:// or https:// URL");
  }
  return a;
}

}  // namespace udpring::io
