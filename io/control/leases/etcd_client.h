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

#include "core/json_limits.h"
#include "io/control/leases/http_transfer.h"
#include "io/control/leases/lease_store.h"

namespace udpring::io {

/// Every answer and watch message: 32 MiB is twenty times the lease list of
/// a 5,000-node cluster; a watch message is 5 levels deep.
inline constexpr core::JsonLimits kEtcdAnswerLimits{size_t{32} << 20, 64};

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
  /// Requests end early when `stop` is set or one of `stop_signals` is
  /// pending (both optional; streams take their own `stop`).
  explicit EtcdClient(EtcdConfig cfg, const std::atomic<bool>* stop = nullptr,
                      const sigset_t* stop_signals = nullptr);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  /// POSTs `body` to `path` (e.g. "/v3/kv/range") and returns the JSON
  /// answer, an object. Throws EtcdUnavailable or EtcdError, or
  /// StoreInputError for an answer beyond kEtcdAnswerLimits or not an object.
  nlohmann::json call(const std::string& path, const nlohmann::json& body, long timeout_ms = 5000);

  /// POSTs `body` to a streaming `path` (/v3/watch) and calls `on_message`
  /// for each JSON message until it returns false or `stop` becomes true
  /// (both return normally). Throws when the stream cannot be opened or breaks,
  /// and StoreInputError for a message beyond kEtcdAnswerLimits or not JSON.
  void stream(const std::string& path, const nlohmann::json& body,
              const std::function<bool(const nlohmann::json&)>& on_message,
              const std::atomic<bool>& stop);

  /// Forgets the auth token, so the next request logs in again (a watch
  /// cancelled for "permission denied" does not show up as an HTTP error).
  void reset_auth() { token_.clear(); }

  /// The endpoint that answered last, for logs.
  const std::string& endpoint() const { return cfg_.endpoints[current_]; }

  /// Keys and values go base64 on the wire.
  static std::string b64(const std::string& s);

 private:
  void authenticate();
  std::string perform(const std::string& url, const std::string& body, long timeout_ms,
                      long& status, const std::function<bool(const char*, size_t)>* sink,
                      const std::atomic<bool>* stop);

  EtcdConfig cfg_;
  const std::atomic<bool>* stop_;
  const sigset_t* stop_signals_;
  TlsOptions tls_;
  size_t current_ = 0;
  std::string token_;
  const std::vector<std::string>* extra_headers_ = nullptr;  // for the next perform()
  HttpTransfer http_;
};

}  // namespace udpring::io
