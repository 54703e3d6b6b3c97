#pragma once
// One libcurl easy handle and the request shapes the lease stores need:
// JSON calls with a timeout, and long-lived streams fed to a sink, both
// over plain HTTP or TLS (files or PEM in memory). Both the etcd and the
// Kubernetes clients sit on it; one instance per thread.

#include <signal.h>

#include <atomic>
#include <cstddef>
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
  /// Streams: called with each chunk of a 2xx answer's body as it arrives
  /// (any other answer's body is the result's); returning false ends the
  /// transfer normally. Exceptions it throws are rethrown by perform() once
  /// libcurl has returned.
  const std::function<bool(const char*, size_t)>* sink = nullptr;
  const std::atomic<bool>* stop = nullptr;  // polled during transfers
  /// Also ends the transfer (as `stop` does) when one of these signals is
  /// pending: the control thread blocks SIGINT and SIGTERM and takes them
  /// between steps, so none of its requests may hold one off for long.
  /// libcurl polls at least once a second, also while waiting.
  const sigset_t* stop_signals = nullptr;
  /// A body larger than this ends the transfer (too_large): what a server
  /// sends is never buffered without bound.
  size_t max_body_bytes = size_t{64} << 20;
};

struct HttpResult {
  bool transferred = false;  // false: no HTTP answer (see error)
  bool ended_by_us = false;  // the sink or `stop` ended it
  bool tls_verify_failed = false;
  bool too_large = false;    // the body passed max_body_bytes (not transferred)
  long status = 0;
  std::string body;   // without a sink, or not a 2xx answer
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
