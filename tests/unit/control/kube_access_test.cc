// Resolving the API server and credentials: kubeconfig contexts, relative
// paths, *-data fields, the in-cluster environment, and the errors.

#include "io/control/leases/kube_access.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/base64.h"

namespace udpring::io {
namespace {

class KubeAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/udpring-kube-access-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  KubeEnv env() const {
    return [this](const char* name) -> const char* {
      const auto it = env_.find(name);
      return it == env_.end() ? nullptr : it->second.c_str();
    };
  }
  std::string dir_;
  std::map<std::string, std::string> env_;
};

constexpr const char* kTwoContexts = R"(apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority: pki/ca.crt
- name: lab
  cluster:
    server: https://lab:6443
    certificate-authority-data: %CA%
users:
- name: flannel
  user:
    tokenFile: token
- name: admin
  user:
    client-certificate-data: %CERT%
    client-key-data: %KEY%
contexts:
- name: prod
  context: {cluster: prod, user: flannel}
- name: lab
  context: {cluster: lab, user: admin}
current-context: %CTX%
)";

std::string config(const std::string& ctx) {
  std::string s = kTwoContexts;
  auto put = [&](const std::string& key, const std::string& v) { s.replace(s.find(key), key.size(), v); };
  put("%CA%", core::base64_encode("CA PEM"));
  put("%CERT%", core::base64_encode("CERT PEM"));
  put("%KEY%", core::base64_encode("KEY PEM"));
  put("%CTX%", ctx);
  return s;
}

TEST_F(KubeAccessTest, CurrentContextWithFilesRelativeToTheKubeconfig) {
  const std::string path = write("kubeconfig", config("prod"));
  const KubeAccess a = resolve_kube_access("", path, env());
  EXPECT_EQ(a.server, "https://10.0.0.1:6443");
  EXPECT_EQ(a.tls.ca_file, dir_ + "/pki/ca.crt");
  EXPECT_EQ(a.token_file, dir_ + "/token");
  EXPECT_TRUE(a.token.empty());
  EXPECT_NE(a.source.find("context prod"), std::string::npos);
}

TEST_F(KubeAccessTest, DataFieldsAreDecodedPem) {
  const KubeAccess a = parse_kubeconfig("/x/kubeconfig", config("lab"));
  EXPECT_EQ(a.server, "https://lab:6443");
  EXPECT_EQ(a.tls.ca_pem, "CA PEM");
  EXPECT_EQ(a.tls.cert_pem, "CERT PEM");
  EXPECT_EQ(a.tls.key_pem, "KEY PEM");
  EXPECT_TRUE(a.tls.ca_file.empty());
}

TEST_F(KubeAccessTest, ApiUrlReplacesTheKubeconfigServer) {
  const std::string path = write("kubeconfig", config("prod"));
  EXPECT_EQ(resolve_kube_access("https://other:443", path, env()).server, "https://other:443");
}

TEST_F(KubeAccessTest, InClusterFromEnvironmentAndServiceAccount) {
  write("token", "abc\n");
  write("ca.crt", "CA");
  env_ = {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}};
  KubeAccess a = resolve_kube_access("", "", env(), dir_);
  EXPECT_EQ(a.server, "https://10.96.0.1:443");
  EXPECT_EQ(a.token_file, dir_ + "/token");
  EXPECT_EQ(a.tls.ca_file, dir_ + "/ca.crt");
  EXPECT_EQ(a.source, "in-cluster");
  env_["KUBERNETES_SERVICE_HOST"] = "fd00::1";
  EXPECT_EQ(resolve_kube_access("", "", env(), dir_).server, "https://[fd00::1]:443");
}

TEST_F(KubeAccessTest, ErrorsNameTheInputAndTheFix) {
  auto error = [&](const std::string& api_url, const std::string& kubeconfig) {
    try {
      resolve_kube_access(api_url, kubeconfig, env(), dir_ + "/none");
    } catch (const KubeAccessError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error("", "").find("KUBERNETES_SERVICE_HOST"), std::string::npos);
  env_ = {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}};
  EXPECT_NE(error("", "").find("automountServiceAccountToken"), std::string::npos);
  EXPECT_NE(error("", dir_ + "/missing").find("cannot read --kubeconfig-file"), std::string::npos);
  EXPECT_NE(error("", write("bad", "{ not: [yaml")).find("not YAML"), std::string::npos);
  std::string no_ctx = config("prod");
  no_ctx.erase(no_ctx.find("current-context"));
  EXPECT_NE(error("", write("noctx", no_ctx)).find("kubectl config use-context"), std::string::npos);
  EXPECT_NE(error("", write("wrongctx", config("staging"))).find("no entry named \"staging\" in contexts"),
            std::string::npos);
  std::string exec = config("prod");
  exec.replace(exec.find("tokenFile: token"), 16, "exec: {command: aws}");
  EXPECT_NE(error("", write("exec", exec)).find("exec plugin"), std::string::npos);
  EXPECT_NE(error("ftp://x", write("ok", config("prod"))).find("not an http:// or https:// URL"),
            std::string::npos);
}

}  // namespace
}  // namespace udpring::io
