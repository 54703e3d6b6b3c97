#pragma once
// A Kubernetes API client for the few calls the kube lease store makes:
// GET, PATCH and watch streams, over libcurl with the server verified.
// Every call names the RBAC permission it needs, so that a 403 says which
// rule of the ClusterRole is missing. One instance per thread.

#include <sys/types.h>

#include <atomic>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "core/json_limits.h"
#include "io/control/leases/http_transfer.h"
#include "io/control/leases/kube_access.h"
#include "io/control/leases/kube_permissions.h"
#include "io/control/leases/lease_store.h"

namespace udpring::io {

/// Every answer and watch event. A list page of 500 real Nodes (images,
/// managedFields) is some 25 MB; managedFields nest about 15 deep.
inline constexpr core::JsonLimits kKubeAnswerLimits{size_t{64} << 20, 128};
/// A service-account token is 1 to 2 KB.
inline constexpr size_t kMaxTokenBytes = 64 * 1024;

/// The API server answered with an error, or could not be reached: the
/// daemon retries (with the message logged once) and keeps forwarding.
class KubeError : public StoreUnavailable {
 public:
  KubeError(long status, std::string reason, const std::string& message)
      : StoreUnavailable(message), status_(status), reason_(std::move(reason)) {}
  long status() const { return status_; }        // HTTP status; 0 = no answer
  const std::string& reason() const { return reason_; }  // the Status reason ("Expired", ...)

 private:
  long status_;
  std::string reason_;
};

class KubeClient {
 public:
  /// Requests (other than watches, which take their own `stop`) end early
  /// when `stop` is set or one of `stop_signals` is pending; both optional.
  explicit KubeClient(KubeAccess access, const std::atomic<bool>* stop = nullptr,
                      const sigset_t* stop_signals = nullptr);

  /// GET `path` ("/api/v1/nodes/x"); the parsed answer, an object. Throws
  /// KubeError, or StoreInputError for an answer beyond kKubeAnswerLimits,
  /// not JSON or not an object.
  nlohmann::json get(const std::string& path, const KubePermission& perm,
                     long timeout_ms = 10000);

  /// PATCH `path` with `patch` as `content_type`.
  nlohmann::json patch(const std::string& path, const nlohmann::json& patch,
                       const std::string& content_type, const KubePermission& perm);

  /// GETs a watch stream and calls `on_event` with each event object
  /// ({"type":..., "object":...}) until it returns false or `stop` is set
  /// (both return normally) or the server ends the stream (returns true).
  /// Throws KubeError when the stream cannot be opened, StoreInputError for
  /// an event beyond kKubeAnswerLimits.
  bool watch(const std::string& path, const KubePermission& perm,
             const std::function<bool(const nlohmann::json&)>& on_event,
             const std::atomic<bool>& stop);

  const KubeAccess& access() const { return access_; }

 private:
  HttpRequest request(const std::string& method, const std::string& path, long timeout_ms);
  std::string bearer();
  [[noreturn]] void fail(const HttpResult& r, const std::string& method, const std::string& path,
                         const KubePermission& perm);

  KubeAccess access_;
  const std::atomic<bool>* stop_;
  const sigset_t* stop_signals_;
  HttpTransfer http_;
  // The token file as last read, re-read when its mtime or size changes.
  std::string file_token_;
  timespec token_mtime_{};
  off_t token_size_ = -1;
};

/// Only the fields the lease store reads: metadata (name, resourceVersion,
/// annotations), spec.podCIDR(s), status.conditions, and a list's or
/// watch event's envelope. Real Nodes carry images, managedFields and more
/// that would cost megabytes per list page in a large cluster. Text beyond
/// kKubeAnswerLimits or not JSON is discarded (is_discarded()).
nlohmann::json parse_node_json(std::string_view text);

}  // namespace udpring::io
