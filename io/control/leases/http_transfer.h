#pragma once
// One libcurl easy handle and the request shapes the lease stores need:
// JSON calls with a timeout, and long-lived streams fed to a sink, both
// over plain HTTP or TLS (files or PEM in memory). Both the etcd and the
// Kubernetes clients sit on it; one instance per thread.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace udpring::io {

/// Where the CA, client certificate and key come from: a file path or the
/// PEM text itself (a kubeconfig's *-data fields); empty = not used.
struct TlsOptions {
  std::string ca_file, ca_pem;
  std::string cert_file, cert_pem;
  std::string key_file, key_pem;
  bool skip_verify = false;  // a kubeconfig's insecure-skip-tls-verify
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::string body;  // sent with POST/PATCH/PUT
  std::vector<std::string> headers;
  long timeout_ms = 5000;  // 0 = none (streams end by `stop` or the server)
  const TlsOptions* tls = nullptr;
  /// Streams: called with each chunk of the body as it arrives; returning
  /// false ends the transfer normally. Exceptions it throws are rethrown by
  /// perform() once libcurl has returned.
  const std::function<bool(const char*, size_t)>* sink = nullptr;
  const std::atomic<bool>* stop = nullptr;  // polled during transfers
};

struct HttpResult {
  bool transferred = false;  // false: no HTTP answer (see error)
  bool ended_by_us = false;  // the sink or `stop` ended it
  bool tls_verify_failed = false;
  long status = 0;
  std::string body;   // without a sink
  std::string error;  // libcurl's reason when !transferred
};

class HttpTransfer {
 public:
  HttpTransfer();
  ~HttpTransfer();
  HttpTransfer(const HttpTransfer&) = delete;
  HttpTransfer& operator=(const HttpTransfer&) = delete;

  HttpResult perform(const HttpRequest& req);

 private:
  struct Handle;
  std::unique_ptr<Handle> h_;
};

}  // namespace udpring::io
