#include "io/control/leases/http_transfer.h"

#include <curl/curl.h>

#include <exception>
#include <mutex>
#include <stdexcept>

#include "io/control/stop_signals.h"

namespace udpring::io {
namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  const HttpRequest* req;
  CURL* handle;
  std::string body;
  int to_sink = -1;  // the status is 2xx (1) or not (0); -1 until the first byte
  bool sink_done = false;
  bool too_large = false;
  std::exception_ptr error;  // thrown by the sink; rethrown after curl returns
};

size_t on_data(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (t->req->sink && t->to_sink < 0) {
    long status = 0;
    curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &status);
    t->to_sink = status >= 200 && status < 300;
  }
  // An error answer goes to the body, not the sink: it is not the stream.
  if (!t->req->sink || t->to_sink == 0) {
    if (t->body.size() + bytes > t->req->max_body_bytes) {
      t->too_large = true;
      return 0;
    }
    t->body.append(data, bytes);
    return bytes;
  }
  if (t->sink_done) return 0;
  // Nothing may unwind through libcurl's C frames.
  try {
    if ((*t->req->sink)(data, bytes)) return bytes;
  } catch (...) {
    t->error = std::current_exception();
  }
  t->sink_done = true;
  return 0;  // aborts the transfer: the consumer has what it wanted
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* t = static_cast<Transfer*>(user);
  if (t->req->stop && t->req->stop->load(std::memory_order_relaxed)) return 1;
  return t->req->stop_signals && stop_signal_pending(*t->req->stop_signals) ? 1 : 0;
}

// PEM text handed to libcurl without a file; it copies the bytes.
void set_blob(CURL* h, CURLoption opt, const std::string& pem) {
  curl_blob blob{const_cast<char*>(pem.data()), pem.size(), CURL_BLOB_COPY};
  curl_easy_setopt(h, opt, &blob);
}

void set_tls(CURL* h, const TlsOptions& tls) {
  if (!tls.ca_pem.empty()) set_blob(h, CURLOPT_CAINFO_BLOB, tls.ca_pem);
  else if (!tls.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, tls.ca_file.c_str());
  if (!tls.cert_pem.empty()) set_blob(h, CURLOPT_SSLCERT_BLOB, tls.cert_pem);
  else if (!tls.cert_file.empty()) curl_easy_setopt(h, CURLOPT_SSLCERT, tls.cert_file.c_str());
  if (!tls.key_pem.empty()) set_blob(h, CURLOPT_SSLKEY_BLOB, tls.key_pem);
  else if (!tls.key_file.empty()) curl_easy_setopt(h, CURLOPT_SSLKEY, tls.key_file.c_str());
  if (tls.skip_verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
}

}  // namespace

struct HttpTransfer::Handle {
  CURL* h = nullptr;
  ~Handle() {
    if (h) curl_easy_cleanup(h);
  }
};

HttpTransfer::HttpTransfer() : h_(std::make_unique<Handle>()) {
  global_init();
  h_->h = curl_easy_init();
  if (!h_->h) throw std::runtime_error("curl_easy_init failed");
}

HttpTransfer::~HttpTransfer() = default;

HttpResult HttpTransfer::perform(const HttpRequest& req) {
  CURL* h = h_->h;
  curl_easy_reset(h);  // keeps the connection cache
  Transfer t{&req, h, {}, -1, false, false, nullptr};
  curl_slist* headers = nullptr;
  for (const std::string& hdr : req.headers) headers = curl_slist_append(headers, hdr.c_str());
  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  if (req.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
  } else if (req.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  if (req.method != "GET") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req.timeout_ms);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
  if (req.stop || req.stop_signals) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
  }
  if (req.tls) set_tls(h, *req.tls);
  const CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(headers);
  if (t.error) std::rethrow_exception(t.error);
  HttpResult r;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  r.body = std::move(t.body);
  r.ended_by_us = (rc == CURLE_WRITE_ERROR && t.sink_done) || rc == CURLE_ABORTED_BY_CALLBACK;
  r.transferred = rc == CURLE_OK || r.ended_by_us;
  r.tls_verify_failed = rc == CURLE_PEER_FAILED_VERIFICATION;
  r.too_large = t.too_large;
  if (r.too_large) {
    r.body.clear();
    r.error = "the answer is more than " + std::to_string(req.max_body_bytes) + " bytes";
  } else if (!r.transferred) {
    r.error = curl_easy_strerror(rc);
  }
  return r;
}

}  // namespace udpring::io
