#include "io/control/leases/etcd_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/base64.h"
#include "io/control/leases/checked_json.h"

namespace udpring::io {

using Json = nlohmann::json;

namespace {

// A token goes into a header line: printable ASCII only, or a hostile
// answer could add headers of its own.
bool header_safe(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

}  // namespace

EtcdClient::EtcdClient(EtcdConfig cfg, const std::atomic<bool>* stop, const sigset_t* stop_signals)
    : cfg_(std::move(cfg)), stop_(stop), stop_signals_(stop_signals) {
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
  req.stop = stop ? stop : stop_;
  req.stop_signals = stop_signals_;
  req.max_body_bytes = kEtcdAnswerLimits.max_bytes;
  HttpResult r = http_.perform(req);
  status = r.status;
  if (r.too_large) throw StoreInputError("etcd " + url + ": " + r.error);
  if (r.ended_by_us) {
    if (sink) return {};
    throw EtcdUnavailable(url + ": interrupted: the daemon is stopping");
  }
  if (!r.transferred) throw EtcdUnavailable(url + ": " + r.error);
  return std::move(r.body);
}

void EtcdClient::authenticate() {
  token_.clear();
  const Json req = {{"name", cfg_.username}, {"password", cfg_.password}};
  long status = 0;
  const std::string url = endpoint() + "/v3/auth/authenticate";
  const std::string answer = perform(url, req.dump(), 5000, status, nullptr, nullptr);
  if (status != 200) {
    throw EtcdError("etcd authentication as " + cfg_.username + " failed: HTTP " +
                    std::to_string(status) + ": " + core::printable(answer, 300));
  }
  const std::string where = "etcd " + url;
  const std::string token = string_member(parse_answer(answer, kEtcdAnswerLimits, where), "token", where);
  if (token.empty() || !header_safe(token)) {
    throw StoreInputError(where + ": the answer has no token usable in a header");
  }
  token_ = token;
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
        const std::string where = "etcd " + endpoint() + path;
        if (status == 200) {
          Json doc = parse_answer(answer, kEtcdAnswerLimits, where);
          if (!doc.is_object()) throw StoreInputError(where + ": the answer is not a JSON object");
          return doc;
        }
        const Json doc = core::json_limits_exceeded(answer, kEtcdAnswerLimits)
                             ? Json()
                             : Json::parse(answer, nullptr, false);
        const auto error = doc.is_object() ? doc.find("error") : doc.end();
        const std::string message = core::printable(
            error != doc.end() && error->is_string() ? error->get<std::string>() : answer, 300);
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
    } catch (const StoreInputError&) {
      // Thrown on (counted and retried); the next call asks another member.
      current_ = (current_ + 1) % cfg_.endpoints.size();
      token_.clear();
      throw;
    }
  }
  throw EtcdUnavailable("etcd unreachable (" + last_error + ")");
}

void EtcdClient::stream(const std::string& path, const Json& body,
                        const std::function<bool(const Json&)>& on_message,
                        const std::atomic<bool>& stop) {
  std::string pending;
  bool consumer_done = false;
  const std::string where = "etcd " + endpoint() + path;
  const std::function<bool(const char*, size_t)> sink = [&](const char* data, size_t n) {
    pending.append(data, n);
    // The gateway sends one JSON document per line. One that cannot be
    // read ends the stream (the watch resumes from its last revision, so
    // no event is skipped); so does a line that never ends.
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      const std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      if (!on_message(parse_answer(line, kEtcdAnswerLimits, where))) {
        consumer_done = true;
        return false;
      }
    }
    if (pending.size() > kEtcdAnswerLimits.max_bytes) {
      throw StoreInputError(where + ": a message of more than " +
                            std::to_string(kEtcdAnswerLimits.max_bytes) + " bytes");
    }
    return true;
  };
  long status = 0;
  // flannel watches WithRequireLeader: a member cut off from the quorum
  // ends the stream instead of going silent (gRPC metadata via the gateway).
  static const std::vector<std::string> kRequireLeader = {"Grpc-Metadata-hasleader: true"};
  extra_headers_ = &kRequireLeader;
  std::string error_body;
  try {
    if (!cfg_.username.empty() && token_.empty()) authenticate();
    error_body = perform(endpoint() + path, body.dump(), 0, status, &sink, &stop);
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
    throw EtcdError(endpoint() + path + ": HTTP " + std::to_string(status) + ": " +
                    core::printable(error_body, 300));
  }
  throw EtcdUnavailable(endpoint() + path + ": stream ended");
}

}  // namespace udpring::io
