#include "io/control/leases/etcd_client.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "core/base64.h"

namespace udpring::io {
namespace {

using Json = nlohmann::json;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  std::string body;  // non-streaming answer, or the unconsumed stream tail
  const std::function<bool(const char*, size_t)>* sink = nullptr;
  const std::atomic<bool>* stop = nullptr;
  bool sink_done = false;
  std::exception_ptr error;  // thrown by the sink; rethrown after curl returns
  const std::vector<std::string>* extra_headers = nullptr;
};

size_t on_data(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (t->sink && !t->sink_done) {
    // Nothing may unwind through libcurl's C frames.
    try {
      if (!(*t->sink)(data, bytes)) {
        t->sink_done = true;
        return 0;  // abort the transfer: the consumer has what it wanted
      }
    } catch (...) {
      t->error = std::current_exception();
      t->sink_done = true;
      return 0;
    }
    return bytes;
  }
  t->body.append(data, bytes);
  return bytes;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return t->stop && t->stop->load(std::memory_order_relaxed) ? 1 : 0;
}

}  // namespace

struct EtcdClient::Curl {
  CURL* h = nullptr;
  ~Curl() {
    if (h) curl_easy_cleanup(h);
  }
};

EtcdClient::EtcdClient(EtcdConfig cfg) : cfg_(std::move(cfg)), curl_(std::make_unique<Curl>()) {
  if (cfg_.endpoints.empty()) throw std::invalid_argument("no etcd endpoints");
  global_init();
  curl_->h = curl_easy_init();
  if (!curl_->h) throw std::runtime_error("curl_easy_init failed");
  // flanneld's rule: TLS only with both a key and a certificate.
  tls_ = !cfg_.certfile.empty() && !cfg_.keyfile.empty();
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
  CURL* h = curl_->h;
  curl_easy_reset(h);
  Transfer t;
  t.sink = sink;
  t.stop = stop;
  t.extra_headers = extra_headers_;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  if (!token_.empty()) headers = curl_slist_append(headers, ("Authorization: " + token_).c_str());
  if (t.extra_headers) {
    for (const std::string& hdr : *t.extra_headers) headers = curl_slist_append(headers, hdr.c_str());
  }
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);  // 0 = none (streams)
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
  if (stop) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
  }
  if (tls_) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, cfg_.certfile.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEY, cfg_.keyfile.c_str());
    if (!cfg_.cafile.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, cfg_.cafile.c_str());
    curl_easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  } else if (!cfg_.cafile.empty() && url.rfind("https://", 0) == 0) {
    curl_easy_setopt(h, CURLOPT_CAINFO, cfg_.cafile.c_str());
  }
  const CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(headers);
  status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (t.error) std::rethrow_exception(t.error);
  if (rc == CURLE_WRITE_ERROR && t.sink_done) return {};
  if (rc == CURLE_ABORTED_BY_CALLBACK) return {};
  if (rc != CURLE_OK) throw EtcdUnavailable(url + ": " + curl_easy_strerror(rc));
  return t.body;
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
