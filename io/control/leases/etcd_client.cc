#include "io/control/leases/etcd_client.h"

#include <spdlog/spdlog.h>

#include "core/base64.h"

namespace udpring::io {

using Json = nlohmann::json;

EtcdClient::EtcdClient(EtcdConfig cfg) : cfg_(std::move(cfg)) {
  if (cfg_.endpoints.empty()) throw std::invalid_argument("no etcd endpoints");
  // flanneld's rule: a client certificate only with both a key and a
  // certificate; the CA alone still verifies an https endpoint.
  if (!cfg_.certfile.empty() && !cfg_.keyfile.empty()) {
    tls_.cert_file = cfg_.certfile;
    tls_.key_file = cfg_.keyfile;
  }
  tls_.ca_file = cfg_.cafile;
}

EtcdClient::~EtcdClient() = default;

std::string EtcdClient::b64(const std::string& s) { return core::base64_encode(s); }

std::string EtcdClient::unb64(const Json& v) {
  if (!v.is_string()) return {};
  return core::base64_decode(v.get<std::string>()).value_or(std::string());
}

int64_t EtcdClient::int64(const Json& obj, const char* field) {
  if (!obj.is_object()) return 0;
  const auto it = obj.find(field);
  if (it == obj.end()) return 0;
  if (it->is_string()) {
    try {
      return std::stoll(it->get<std::string>());
    } catch (const std::exception&) {
      return 0;
    }
  }
  return it->is_number() ? it->get<int64_t>() : 0;
}

std::string EtcdClient::perform(const std::string& url, const std::string& body, long timeout_ms,
                                long& status, const std::function<bool(const char*, size_t)>* sink,
                                const std::atomic<bool>* stop) {
  HttpRequest req;
  req.method = "POST";
  req.url = url;
  req.body = body;
  req.timeout_ms = timeout_ms;  // 0 = none (streams)
  req.headers.push_back("Content-Type: application/json");
  if (!token_.empty()) req.headers.push_back("Authorization: " + token_);
  if (extra_headers_) req.headers.insert(req.headers.end(), extra_headers_->begin(), extra_headers_->end());
  req.tls = &tls_;
  req.sink = sink;
  req.stop = stop;
  HttpResult r = http_.perform(req);
  status = r.status;
  if (r.ended_by_us) return {};
  if (!r.transferred) throw EtcdUnavailable(url + ": " + r.error);
  return std::move(r.body);
}

void EtcdClient::authenticate() {
  token_.clear();
  const Json req = {{"name", cfg_.username}, {"password", cfg_.password}};
  long status = 0;
  const std::string url = endpoint() + "/v3/auth/authenticate";
  const std::string answer = perform(url, req.dump(), 5000, status, nullptr, nullptr);
  const Json doc = Json::parse(answer, nullptr, false);
  if (status != 200 || !doc.is_object() || !doc.contains("token")) {
    throw EtcdError("etcd authentication as " + cfg_.username + " failed: " + answer);
  }
  token_ = doc["token"].get<std::string>();
}

Json EtcdClient::call(const std::string& path, const Json& body, long timeout_ms) {
  std::string last_error;
  for (size_t tried = 0; tried < cfg_.endpoints.size(); ++tried) {
    try {
      for (int attempt = 0; attempt < 2; ++attempt) {
        if (!cfg_.username.empty() && token_.empty()) authenticate();
        long status = 0;
        const std::string answer =
            perform(endpoint() + path, body.dump(), timeout_ms, status, nullptr, nullptr);
        Json doc = Json::parse(answer, nullptr, false);
        if (status == 200 && doc.is_object()) return doc;
        std::string message = doc.is_object() && doc.contains("error") && doc["error"].is_string()
                                  ? doc["error"].get<std::string>()
                                  : answer;
        // Tokens expire (etcd's simple tokens after 5 min idle): log in again once.
        if (!cfg_.username.empty() && attempt == 0 &&
            (status == 401 || message.find("token") != std::string::npos)) {
          token_.clear();
          continue;
        }
        throw EtcdError(endpoint() + path + ": HTTP " + std::to_string(status) + ": " + message);
      }
    } catch (const EtcdUnavailable& e) {
      last_error = e.what();
      current_ = (current_ + 1) % cfg_.endpoints.size();
      token_.clear();
    }
  }
  throw EtcdUnavailable("etcd unreachable (" + last_error + ")");
}

void EtcdClient::stream(const std::string& path, const Json& body,
                        const std::function<bool(const Json&)>& on_message,
                        const std::atomic<bool>& stop) {
  std::string pending;
  bool consumer_done = false;
  const std::function<bool(const char*, size_t)> sink = [&](const char* data, size_t n) {
    pending.append(data, n);
    // The gateway sends one JSON document per line.
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      const std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      const Json doc = Json::parse(line, nullptr, false);
      if (doc.is_discarded()) continue;
      if (!on_message(doc)) {
        consumer_done = true;
        return false;
      }
    }
    return true;
  };
  long status = 0;
  // flannel watches WithRequireLeader: a member cut off from the quorum
  // ends the stream instead of going silent (gRPC metadata via the gateway).
  static const std::vector<std::string> kRequireLeader = {"Grpc-Metadata-hasleader: true"};
  extra_headers_ = &kRequireLeader;
  try {
    if (!cfg_.username.empty() && token_.empty()) authenticate();
    perform(endpoint() + path, body.dump(), 0, status, &sink, &stop);
    extra_headers_ = nullptr;
  } catch (const EtcdUnavailable&) {
    extra_headers_ = nullptr;
    current_ = (current_ + 1) % cfg_.endpoints.size();
    token_.clear();
    throw;
  } catch (...) {
    extra_headers_ = nullptr;
    throw;
  }
  if (consumer_done || stop.load()) return;
  if (status != 200) {
    token_.clear();  // a rejected token is the usual cause
    throw EtcdError(endpoint() + path + ": HTTP " + std::to_string(status) + ": " + pending);
  }
  throw EtcdUnavailable(endpoint() + path + ": stream ended");
}

}  // namespace udpring::io
