#pragma once
// A small client for etcd's v3 JSON gateway (POST /v3/...), over libcurl:
// endpoint failover, TLS client certificates, user/password authentication
// with token refresh, and streaming for watches. One instance per thread
// (it owns a curl handle). Keys and values are base64 on the wire; int64s
// are JSON strings.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/control/leases/http_transfer.h"
#include "io/control/leases/lease_store.h"

namespace udpring::io {

struct EtcdConfig {
  std::vector<std::string> endpoints;  // http(s)://host:port, tried in order
  std::string cafile, certfile, keyfile;
  std::string username, password;
};

/// etcd answered with an error (HTTP status, gateway error message); the
/// daemon retries, as for an unreachable etcd.
class EtcdError : public StoreUnavailable {
 public:
  using StoreUnavailable::StoreUnavailable;
};

/// No endpoint could be reached (connection refused, timeout, TLS failure).
class EtcdUnavailable : public EtcdError {
 public:
  using EtcdError::EtcdError;
};

class EtcdClient {
 public:
  explicit EtcdClient(EtcdConfig cfg);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  /// POSTs `body` to `path` (e.g. "/v3/kv/range") and returns the JSON
  /// answer. Throws EtcdUnavailable or EtcdError.
  nlohmann::json call(const std::string& path, const nlohmann::json& body, long timeout_ms = 5000);

  /// POSTs `body` to a streaming `path` (/v3/watch) and calls `on_message`
  /// for each JSON message until it returns false or `stop` becomes true
  /// (both return normally). Throws when the stream cannot be opened or breaks.
  void stream(const std::string& path, const nlohmann::json& body,
              const std::function<bool(const nlohmann::json&)>& on_message,
              const std::atomic<bool>& stop);

  /// Forgets the auth token, so the next request logs in again (a watch
  /// cancelled for "permission denied" does not show up as an HTTP error).
  void reset_auth() { token_.clear(); }

  /// The endpoint that answered last, for logs.
  const std::string& endpoint() const { return cfg_.endpoints[current_]; }

  // Helpers for the gateway's encodings.
  static std::string b64(const std::string& s);
  static std::string unb64(const nlohmann::json& v);  // "" for a missing field
  static int64_t int64(const nlohmann::json& obj, const char* field);  // 0 if absent

 private:
  void authenticate();
  std::string perform(const std::string& url, const std::string& body, long timeout_ms,
                      long& status, const std::function<bool(const char*, size_t)>* sink,
                      const std::atomic<bool>* stop);

  EtcdConfig cfg_;
  TlsOptions tls_;
  size_t current_ = 0;
  std::string token_;
  const std::vector<std::string>* extra_headers_ = nullptr;  // for the next perform()
  HttpTransfer http_;
};

}  // namespace udpring::io
