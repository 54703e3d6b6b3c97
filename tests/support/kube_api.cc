#include "tests/support/kube_api.h"

#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <thread>

#include "tests/support/cluster.h"

namespace udpring::test {

using Json = nlohmann::json;

const std::vector<std::string> KubeApi::kFlannelRole = {"pods/get", "nodes/get", "nodes/list",
                                                        "nodes/watch", "nodes/status/patch"};

KubeApi::KubeApi(const Netns& ns, std::string ip, std::string dir, const std::vector<std::string>& allow,
                 bool mutable_pod_cidr)
    : ns_(ns), ip_(std::move(ip)), dir_(std::move(dir)) {
  sh_ok("mkdir -p " + dir_);
  make_test_pki(dir_ + "/pki", ip_);
  const Json config = {{"admin_token", kAdminToken},
                       {"users", {{kFlannelToken, {{"name", kFlannelUser}, {"allow", allow}}}}},
                       {"bookmark_s", 1},
                       {"mutable_pod_cidr", mutable_pod_cidr}};
  std::ofstream(dir_ + "/api.json") << config.dump(2);
  proc_ = std::make_unique<Process>(
      ns_.name(),
      std::vector<std::string>{"python3", UDPRING_SOURCE_DIR "/tests/support/kube_api_server.py",
                               "--listen", ip_ + ":6443", "--cert", dir_ + "/pki/server.crt", "--key",
                               dir_ + "/pki/server.key", "--config", dir_ + "/api.json"},
      dir_ + "/api.log");
  for (int i = 0; i < 100; ++i) {
    if (call("GET", "/_test/healthz").status == 200) return;
    if (!proc_->running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("the kube API stand-in did not start:\n" + proc_->log());
}

KubeApi::~KubeApi() = default;

std::string KubeApi::log() const { return proc_ ? proc_->log() : ""; }

KubeApi::Reply KubeApi::call(const std::string& method, const std::string& path, const Json& body,
                             const std::string& content_type, const std::string& token) const {
  const std::string body_file = dir_ + "/call-" + std::to_string(calls_++) + ".json";
  std::string cmd = ns_.exec() + "curl -s --max-time 10 --cacert " + ca_file() + " -X " + method +
                    " -H 'Authorization: Bearer " + token + "'";
  if (!body.is_null()) {
    std::ofstream(body_file) << body.dump();
    cmd += " -H 'Content-Type: " + content_type + "' --data-binary @" + body_file;
  }
  cmd += " -w '\\n%{http_code}' '" + url() + path + "'";
  const std::string out = sh_out(cmd);
  ::unlink(body_file.c_str());
  Reply r;
  const size_t nl = out.rfind('\n');
  if (nl == std::string::npos) return r;
  r.status = std::atol(out.c_str() + nl + 1);
  r.body = Json::parse(out.substr(0, nl), nullptr, false);
  return r;
}

Json KubeApi::must(const std::string& method, const std::string& path, const Json& body,
                   const std::string& content_type) const {
  Reply r = call(method, path, body, content_type);
  if (r.status < 200 || r.status > 299) {
    throw std::runtime_error(method + " " + path + ": HTTP " + std::to_string(r.status) + " " +
                             r.body.dump());
  }
  return r.body;
}

void KubeApi::add_node(const std::string& name, const std::string& pod_cidr,
                       const Json& annotations) const {
  Json node = Json::object();
  node["metadata"] = {{"name", name},
                      {"annotations", annotations},
                      {"labels", {{"kubernetes.io/os", "linux"}}}};
  node["spec"] = Json::object();
  if (!pod_cidr.empty()) node["spec"] = {{"podCIDR", pod_cidr}, {"podCIDRs", Json::array({pod_cidr})}};
  Json ready = {{"type", "Ready"},
                {"status", "True"},
                {"reason", "KubeletReady"},
                {"message", "kubelet is posting ready status"}};
  node["status"] = {{"conditions", Json::array({ready})}};
  must("POST", "/api/v1/nodes", node);
}

Json KubeApi::flannel_annotations(const std::string& ip) {
  return {{"flannel.alpha.coreos.com/kube-subnet-manager", "true"},
          {"flannel.alpha.coreos.com/backend-type", ""},
          {"flannel.alpha.coreos.com/backend-data", "null"},
          {"flannel.alpha.coreos.com/public-ip", ip}};
}

void KubeApi::set_user(const std::string& token, const std::string& name,
                       const std::vector<std::string>& allow) const {
  must("POST", "/_test/users", {{"token", token}, {"name", name}, {"allow", allow}});
}

void KubeApi::sabotage(const std::string& method, const std::string& path, const std::string& body,
                       bool watch, const std::string& client) const {
  Json s = {{"method", method}, {"path", path}, {"watch", watch}, {"body", body}};
  if (!client.empty()) s["client"] = client;
  must("POST", "/_test/sabotage", s);
}

std::string KubeApi::kubeconfig(const std::string& token, const std::string& file_name,
                                const std::string& ca) const {
  const std::string path = dir_ + "/" + file_name;
  std::ofstream(path) << "apiVersion: v1\nkind: Config\n"
                      << "clusters:\n- name: test\n  cluster:\n    server: " << url()
                      << "\n    certificate-authority: " << (ca.empty() ? ca_file() : ca) << "\n"
                      << "users:\n- name: flannel\n  user:\n    token: " << token << "\n"
                      << "contexts:\n- name: test\n  context:\n    cluster: test\n    user: flannel\n"
                      << "current-context: test\n";
  return path;
}

}  // namespace udpring::test
