// deploy/kube-udpring.yml against the daemon itself: its command line goes
// through udpringd's own flag parser, the paths those options name are
// mounted, net-conf.json goes through the daemon's net-conf parser, and the
// ClusterRole grants exactly the calls of io/control/leases/kube_permissions.h.

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/net_config.h"
#include "io/control/leases/kube_permissions.h"
#include "io/daemon/options.h"

#ifndef UDPRING_KUBE_MANIFEST
#error "UDPRING_KUBE_MANIFEST must name deploy/kube-udpring.yml"
#endif

namespace udpring {
namespace {

using Json = nlohmann::json;

// Opened by udpringd itself (io/kernel/tun_device.cc), not named by a flag.
constexpr const char* kTunDevice = "/dev/net/tun";
// Taken by the iptables commands udpringd runs with --ip-masq.
constexpr const char* kXtablesLock = "/run/xtables.lock";
// Where the flannel CNI plugin's conflist has to be on the host.
constexpr const char* kCniConflist = "/etc/cni/net.d/10-flannel.conflist";

const std::vector<YAML::Node>& documents() {
  static const std::vector<YAML::Node> docs = YAML::LoadAllFromFile(UDPRING_KUBE_MANIFEST);
  return docs;
}

// A missing key gives an undefined node, whose Type() throws: ask first.
bool is(const YAML::Node& n, YAML::NodeType::value t) { return n.IsDefined() && n.Type() == t; }

std::string str(const YAML::Node& n) {
  return is(n, YAML::NodeType::Scalar) ? n.as<std::string>() : std::string();
}

std::vector<std::string> strings(const YAML::Node& n) {
  std::vector<std::string> out;
  if (is(n, YAML::NodeType::Sequence)) {
    for (const auto& e : n) out.push_back(str(e));
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : " ") + e;
  return s;
}

// The objects of that kind (and name, if given); the test that uses one
// asserts that there is exactly one.
std::vector<YAML::Node> objects(const std::string& kind, const std::string& name = "") {
  std::vector<YAML::Node> out;
  for (const YAML::Node& d : documents()) {
    if (str(d["kind"]) == kind && (name.empty() || str(d["metadata"]["name"]) == name)) out.push_back(d);
  }
  return out;
}

YAML::Node daemon_set() {
  const auto ds = objects("DaemonSet");
  if (ds.size() != 1) throw std::runtime_error(std::to_string(ds.size()) + " DaemonSets, not 1");
  return ds.front();
}

YAML::Node pod_spec() { return daemon_set()["spec"]["template"]["spec"]; }

YAML::Node container(const char* list, const std::string& name) {
  for (const auto& c : pod_spec()[list]) {
    if (str(c["name"]) == name) return c;
  }
  throw std::runtime_error(std::string("no ") + list + " entry named " + name);
}

// udpringd's container: the one that runs /opt/bin/flanneld, the name
// flannel's image and udpring's (scripts/build-image.sh) give the daemon.
YAML::Node daemon_container() {
  std::vector<YAML::Node> found;
  for (const auto& c : pod_spec()["containers"]) {
    const auto cmd = strings(c["command"]);
    if (!cmd.empty() && cmd.front() == "/opt/bin/flanneld") found.push_back(c);
  }
  if (found.size() != 1) {
    throw std::runtime_error(std::to_string(found.size()) + " containers run /opt/bin/flanneld, not 1");
  }
  return found.front();
}

std::vector<std::string> command_line(const YAML::Node& c) {
  auto argv = strings(c["command"]);
  for (auto& a : strings(c["args"])) argv.push_back(a);
  return argv;
}

io::Options daemon_options() {
  const auto argv = command_line(daemon_container());
  std::vector<const char*> p;
  for (const auto& a : argv) p.push_back(a.c_str());
  return io::parse_options(static_cast<int>(p.size()), p.data(),
                           [](const char*) -> const char* { return nullptr; });
}

std::string normal(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string dir_of(const std::string& path) {
  return normal(std::filesystem::path(path).parent_path().string());
}

std::string base_of(const std::string& path) { return std::filesystem::path(path).filename().string(); }

YAML::Node volume(const std::string& name) {
  for (const auto& v : pod_spec()["volumes"]) {
    if (str(v["name"]) == name) return v;
  }
  throw std::runtime_error("no volume named " + name);
}

// The volume mounted at exactly `path` (the whole volume, no subPath) in
// container `c`.
YAML::Node volume_at(const YAML::Node& c, const std::string& path) {
  for (const auto& m : c["volumeMounts"]) {
    if (normal(str(m["mountPath"])) == normal(path) && !m["subPath"].IsDefined()) {
      return volume(str(m["name"]));
    }
  }
  throw std::runtime_error("container " + str(c["name"]) + " mounts nothing at " + path);
}

YAML::Node config_map(const std::string& name) {
  const auto cms = objects("ConfigMap", name);
  if (cms.size() != 1) throw std::runtime_error(std::to_string(cms.size()) + " ConfigMaps named " + name);
  EXPECT_EQ(str(cms.front()["metadata"]["namespace"]), str(daemon_set()["metadata"]["namespace"]))
      << "ConfigMap " << name << " is not in the DaemonSet's namespace";
  return cms.front();
}

// The text of `file` in the ConfigMap volume `v` mounted at its directory:
// the key of that name, or the key an `items` entry maps to that path.
std::string config_map_file(const YAML::Node& v, const std::string& file) {
  if (!is(v["configMap"], YAML::NodeType::Map)) throw std::runtime_error("volume " + str(v["name"]) + " is not a configMap");
  std::string key = file;
  if (v["configMap"]["items"].IsDefined()) {
    key.clear();
    for (const auto& it : v["configMap"]["items"]) {
      if (str(it["path"]) == file) key = str(it["key"]);
    }
    if (key.empty()) throw std::runtime_error("volume " + str(v["name"]) + " has no item with path " + file);
  }
  const YAML::Node data = config_map(str(v["configMap"]["name"]))["data"];
  if (!is(data[key], YAML::NodeType::Scalar)) {
    throw std::runtime_error("ConfigMap " + str(v["configMap"]["name"]) + " has no data key " + key);
  }
  return data[key].as<std::string>();
}

std::string config_map_data(const std::string& key) {
  const std::string volume_name = str(volume_at(daemon_container(), "/etc/kube-flannel")["name"]);
  return config_map_file(volume(volume_name), key);
}

void expect_host_path(const YAML::Node& v, const std::string& path, const std::string& type) {
  ASSERT_TRUE(is(v["hostPath"], YAML::NodeType::Map)) << "volume " << str(v["name"]) << " is not a hostPath";
  EXPECT_EQ(str(v["hostPath"]["path"]), path) << "volume " << str(v["name"]);
  EXPECT_EQ(str(v["hostPath"]["type"]), type) << "volume " << str(v["name"]) << "'s hostPath type";
}

TEST(KubeManifest, HasFlannelsObjects) {
  ASSERT_NO_THROW(documents()) << "cannot parse " << UDPRING_KUBE_MANIFEST;
  const auto ns = objects("Namespace");
  ASSERT_EQ(ns.size(), 1u);
  EXPECT_EQ(str(ns[0]["metadata"]["name"]), "kube-flannel");
  EXPECT_EQ(str(ns[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]), "privileged")
      << "hostNetwork, hostPath and NET_ADMIN need the privileged Pod Security level";
  const YAML::Node ds = daemon_set();
  EXPECT_EQ(str(ds["metadata"]["name"]), "kube-flannel-ds");
  EXPECT_EQ(str(ds["metadata"]["namespace"]), "kube-flannel");
  EXPECT_EQ(str(ds["apiVersion"]), "apps/v1");
  const YAML::Node labels = ds["spec"]["template"]["metadata"]["labels"];
  const std::vector<std::pair<std::string, std::string>> want = {
      {"app", "flannel"}, {"k8s-app", "flannel"}, {"tier", "node"}};
  for (const auto& [k, v] : want) EXPECT_EQ(str(labels[k]), v) << "pod label " << k;
  const YAML::Node selector = ds["spec"]["selector"]["matchLabels"];
  ASSERT_TRUE(is(selector, YAML::NodeType::Map) && selector.size() > 0) << "no selector.matchLabels";
  for (auto it = selector.begin(); it != selector.end(); ++it) {
    EXPECT_EQ(str(labels[str(it->first)]), str(it->second))
        << "the selector's " << str(it->first) << " does not match the pods";
  }
}

TEST(KubeManifest, CommandLineIsTheDaemonsAndProbesItsHealthPort) {
  io::Options o;
  ASSERT_NO_THROW(o = daemon_options()) << join(command_line(daemon_container()));
  EXPECT_EQ(o.subnet_mgr, "kube");
  EXPECT_TRUE(o.ip_masq);
  EXPECT_TRUE(o.keep_tun) << "a pod restart would take the device and its route with it";
  EXPECT_TRUE(o.unimplemented.empty())
      << "udpringd accepts but does not implement: " << join(o.unimplemented);
  ASSERT_NE(o.healthz_port, 0) << "no --healthz-port: nothing for the probes to ask";
  const YAML::Node c = daemon_container();
  const std::vector<std::pair<std::string, std::string>> probes = {{"livenessProbe", "/healthz"},
                                                                   {"readinessProbe", "/readyz"}};
  for (const auto& [probe, path] : probes) {
    ASSERT_TRUE(is(c[probe], YAML::NodeType::Map)) << "no " << probe;
    const YAML::Node get = c[probe]["httpGet"];
    ASSERT_TRUE(is(get, YAML::NodeType::Map)) << probe << " is not an httpGet";
    EXPECT_EQ(str(get["path"]), path) << probe;
    EXPECT_EQ(str(get["port"]), std::to_string(o.healthz_port)) << probe << " does not ask --healthz-port";
  }
}

TEST(KubeManifest, MountsWhatTheDaemonTouches) {
  const io::Options o = daemon_options();
  const YAML::Node c = daemon_container();
  ASSERT_FALSE(o.subnet_file.empty());
  // subnet.env, for the CNI plugin on the host: the same directory there.
  const std::string run = dir_of(o.subnet_file);
  expect_host_path(volume_at(c, run), run, "");
  // net-conf.json: a key of the ConfigMap mounted at its directory.
  const YAML::Node cfg = volume_at(c, dir_of(o.net_config_path));
  EXPECT_NO_THROW(config_map_file(cfg, base_of(o.net_config_path)));
  expect_host_path(volume_at(c, kTunDevice), kTunDevice, "CharDevice");
  expect_host_path(volume_at(c, kXtablesLock), kXtablesLock, "FileOrCreate");
}

TEST(KubeManifest, NetConfIsUdpForTheDaemonsParser) {
  const io::Options o = daemon_options();
  const std::string text = config_map_data(base_of(o.net_config_path));
  core::NetConfig cfg;
  ASSERT_NO_THROW(cfg = core::parse_net_config(text)) << text;
  EXPECT_EQ(cfg.backend_type, "udp");
  EXPECT_EQ(cfg.port, core::kDefaultUdpPort) << "deploy/README.md's migration assumes flanneld's port";
  // parse_net_config takes a missing Backend as udp too; the file says it.
  const Json j = Json::parse(text);
  ASSERT_TRUE(j.contains("Backend") && j["Backend"].is_object()) << text;
  EXPECT_EQ(j["Backend"].value("Type", ""), "udp");
}

TEST(KubeManifest, CniConfIsInstalledWithFlannelsPlugins) {
  const std::string text = config_map_data("cni-conf.json");
  Json j;
  ASSERT_NO_THROW(j = Json::parse(text)) << text;
  EXPECT_EQ(j.value("name", ""), "cbr0");
  EXPECT_EQ(j.value("cniVersion", ""), "0.3.1");
  ASSERT_TRUE(j.contains("plugins") && j["plugins"].is_array() && j["plugins"].size() == 2) << text;
  const Json& flannel = j["plugins"][0];
  EXPECT_EQ(flannel.value("type", ""), "flannel");
  EXPECT_EQ(flannel.value("delegate", Json::object()).value("hairpinMode", false), true);
  EXPECT_EQ(flannel.value("delegate", Json::object()).value("isDefaultGateway", false), true);
  const Json& portmap = j["plugins"][1];
  EXPECT_EQ(portmap.value("type", ""), "portmap");
  EXPECT_EQ(portmap.value("capabilities", Json::object()).value("portMappings", false), true);

  // install-cni: cp -f <the ConfigMap's cni-conf.json> <the host's conflist>.
  const YAML::Node init = container("initContainers", "install-cni");
  const auto argv = command_line(init);
  ASSERT_EQ(argv.size(), 4u) << join(argv);
  EXPECT_EQ(argv[0], "cp");
  EXPECT_EQ(argv[1], "-f");
  EXPECT_EQ(base_of(argv[2]), "cni-conf.json") << join(argv);
  EXPECT_EQ(config_map_file(volume_at(init, dir_of(argv[2])), base_of(argv[2])), text)
      << argv[2] << " is not the ConfigMap's cni-conf.json";
  EXPECT_EQ(argv[3], kCniConflist);
  expect_host_path(volume_at(init, dir_of(argv[3])), dir_of(kCniConflist), "");

  // install-cni-plugin: flannel's CNI plugin binary into the host's /opt/cni/bin.
  const YAML::Node plugin = container("initContainers", "install-cni-plugin");
  const auto pargv = command_line(plugin);
  ASSERT_EQ(pargv.size(), 4u) << join(pargv);
  EXPECT_EQ(join(pargv), "cp -f /flannel /opt/cni/bin/flannel");
  expect_host_path(volume_at(plugin, "/opt/cni/bin"), "/opt/cni/bin", "");
}

TEST(KubeManifest, ClusterRoleGrantsExactlyTheDaemonsCalls) {
  const auto roles = objects("ClusterRole", std::string(io::kKubeClusterRole));
  ASSERT_EQ(roles.size(), 1u) << "ClusterRole " << io::kKubeClusterRole;
  std::set<std::pair<std::string, std::string>> granted, needed;
  for (const auto& rule : roles[0]["rules"]) {
    EXPECT_EQ(strings(rule["apiGroups"]), std::vector<std::string>{""}) << "a rule outside the core API group";
    EXPECT_FALSE(rule["resourceNames"].IsDefined() || rule["nonResourceURLs"].IsDefined())
        << "resourceNames / nonResourceURLs: not what kube_permissions.h describes";
    for (const auto& r : strings(rule["resources"])) {
      for (const auto& v : strings(rule["verbs"])) granted.emplace(r, v);
    }
  }
  for (const auto& p : io::kKubePermissions) needed.emplace(std::string(p.resource), std::string(p.verb));
  std::ostringstream missing, extra;
  for (const auto& [r, v] : needed) {
    if (!granted.count({r, v})) missing << " " << r << ":" << v;
  }
  for (const auto& [r, v] : granted) {
    if (!needed.count({r, v})) extra << " " << r << ":" << v;
  }
  EXPECT_EQ(missing.str(), "") << "the daemon makes these calls; the ClusterRole does not allow them";
  EXPECT_EQ(extra.str(), "") << "granted, but the daemon never makes these calls";
}

TEST(KubeManifest, BindingGivesTheRoleToTheDaemonSetsAccount) {
  const YAML::Node ds = daemon_set();
  const std::string account = str(pod_spec()["serviceAccountName"]);
  const std::string ns = str(ds["metadata"]["namespace"]);
  ASSERT_FALSE(account.empty()) << "no serviceAccountName: the pod would run as default";
  const auto sas = objects("ServiceAccount", account);
  ASSERT_EQ(sas.size(), 1u) << "ServiceAccount " << account;
  EXPECT_EQ(str(sas[0]["metadata"]["namespace"]), ns);

  bool bound = false;
  for (const auto& b : objects("ClusterRoleBinding")) {
    if (str(b["roleRef"]["kind"]) != "ClusterRole" || str(b["roleRef"]["name"]) != io::kKubeClusterRole ||
        str(b["roleRef"]["apiGroup"]) != "rbac.authorization.k8s.io") {
      continue;
    }
    for (const auto& s : b["subjects"]) {
      bound |= str(s["kind"]) == "ServiceAccount" && str(s["name"]) == account && str(s["namespace"]) == ns;
    }
  }
  EXPECT_TRUE(bound) << "no ClusterRoleBinding gives ClusterRole " << io::kKubeClusterRole
                     << " to ServiceAccount " << ns << "/" << account;
}

TEST(KubeManifest, LeastPrivilegeOnTheHostNetwork) {
  const YAML::Node spec = pod_spec();
  EXPECT_TRUE(is(spec["hostNetwork"], YAML::NodeType::Scalar) && spec["hostNetwork"].as<bool>())
      << "hostNetwork: the TUN, the routes and the UDP port are the node's";
  EXPECT_EQ(str(spec["priorityClassName"]), "system-node-critical");
  const YAML::Node c = daemon_container();
  const YAML::Node sc = c["securityContext"];
  ASSERT_TRUE(is(sc, YAML::NodeType::Map)) << "no securityContext";
  ASSERT_TRUE(is(sc["privileged"], YAML::NodeType::Scalar)) << "say privileged: false (deploy/README.md explains when not)";
  EXPECT_FALSE(sc["privileged"].as<bool>());
  ASSERT_TRUE(is(sc["capabilities"], YAML::NodeType::Map)) << "no capabilities";
  const auto caps = strings(sc["capabilities"]["add"]);
  const std::set<std::string> have(caps.begin(), caps.end());
  EXPECT_EQ(have, (std::set<std::string>{"NET_ADMIN", "NET_RAW"}));
  // io_uring: RuntimeDefault seccomp profiles refuse it (a kubelet with
  // seccompDefault on would apply one).
  EXPECT_EQ(str(sc["seccompProfile"]["type"]), "Unconfined")
      << "the workers' io_uring needs seccompProfile Unconfined (or a Localhost profile)";

  std::set<std::pair<std::string, std::string>> env;
  for (const auto& e : c["env"]) {
    const YAML::Node from = e["valueFrom"];
    const bool field = is(from, YAML::NodeType::Map) && is(from["fieldRef"], YAML::NodeType::Map);
    env.emplace(str(e["name"]), field ? str(from["fieldRef"]["fieldPath"]) : std::string());
  }
  EXPECT_TRUE(env.count({"NODE_NAME", "spec.nodeName"})) << "NODE_NAME saves the pods get";
  EXPECT_TRUE(env.count({"POD_NAME", "metadata.name"}));
  EXPECT_TRUE(env.count({"POD_NAMESPACE", "metadata.namespace"}));
}

// udpring's image is imported on each node, not pulled: a :latest tag would
// otherwise make the kubelet pull (and fail).
TEST(KubeManifest, LocalImageIsNotPulled) {
  for (const char* list : {"initContainers", "containers"}) {
    for (const auto& c : pod_spec()[list]) {
      if (str(c["image"]).rfind("localhost/", 0) != 0) continue;
      const std::string policy = str(c["imagePullPolicy"]);
      EXPECT_TRUE(policy == "IfNotPresent" || policy == "Never")
          << str(c["name"]) << ": imagePullPolicy '" << policy << "' for " << str(c["image"]);
    }
  }
}

}  // namespace
}  // namespace udpring
