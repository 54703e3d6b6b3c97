#include "tests/support/etcd_stand_in.h"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace udpring::test {

using Json = nlohmann::json;

EtcdStandIn::EtcdStandIn(const Netns& ns, std::string ip, std::string dir)
    : ns_(ns), ip_(std::move(ip)), dir_(std::move(dir)) {
  sh_ok("mkdir -p " + dir_);
  proc_ = std::make_unique<Process>(
      ns_.name(),
      std::vector<std::string>{"python3", UDPRING_SOURCE_DIR "/tests/support/etcd_stand_in.py",
                               "--listen", ip_ + ":2379"},
      dir_ + "/etcd-stand-in.log");
  for (int i = 0; i < 100; ++i) {
    try {
      if (call("GET", "/_test/healthz").value("ok", false)) return;
    } catch (const std::exception&) {
    }
    if (!proc_->running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("the etcd stand-in did not start:\n" + proc_->log());
}

EtcdStandIn::~EtcdStandIn() = default;

std::string EtcdStandIn::log() const { return proc_ ? proc_->log() : ""; }

Json EtcdStandIn::call(const std::string& method, const std::string& path, const Json& body) const {
  std::string cmd = ns_.exec() + "curl -sf --max-time 10 -X " + method;
  if (!body.is_null()) {
    const std::string file = dir_ + "/call-" + std::to_string(calls_++) + ".json";
    std::ofstream(file) << body.dump();
    cmd += " -H 'Content-Type: application/json' --data-binary @" + file;
  }
  const std::string out = sh_out(cmd + " " + endpoint() + path);
  const Json doc = Json::parse(out, nullptr, false);
  if (!doc.is_object()) throw std::runtime_error(method + " " + path + ": " + out);
  return doc;
}

void EtcdStandIn::add_rules(const Json& rules) const { call("POST", "/_test/rules", {{"rules", rules}}); }

Json EtcdStandIn::rule(const std::string& path, const std::string& body, const std::string& client,
                       const std::string& key) {
  Json r = {{"path", path}, {"client", client}, {"answers", Json::array({{{"body", body}}})}};
  if (!key.empty()) r["key"] = key;
  return r;
}

void EtcdStandIn::put(const std::string& key, const std::string& value) const {
  call("POST", "/_test/put", {{"key", key}, {"value", value}});
}

void EtcdStandIn::set_raw_kvs(const Json& kvs) const { call("POST", "/_test/raw_kvs", {{"kvs", kvs}}); }

Json EtcdStandIn::stats() const { return call("GET", "/_test/stats"); }

bool EtcdStandIn::wait_held(const std::string& path, int ms) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  do {
    if (stats()["held"].value(path, 0) > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

bool EtcdStandIn::wait_drained(int ms) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  do {
    if (stats().value("pending", -1) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

}  // namespace udpring::test
