#include "io/control/leases/kube_client.h"

#include <sys/stat.h>

#include <algorithm>

#include "io/control/leases/small_file.h"

namespace udpring::io {
namespace {

using Json = nlohmann::json;

// A Status answer's string member `key`, "" if there is none.
std::string status_field(const Json& doc, const char* key) {
  const auto it = doc.is_object() ? doc.find(key) : doc.end();
  return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string status_message(const std::string& body) {
  const Json doc = parse_node_json(body);
  if (status_field(doc, "kind") == "Status" && !status_field(doc, "message").empty()) {
    return core::printable(status_field(doc, "message"), 300);
  }
  return core::printable(body, 300);
}

std::string status_reason(const std::string& body) {
  return core::printable(status_field(parse_node_json(body), "reason"), 64);
}

// A token goes into a header line: printable ASCII only, or a file or a
// kubeconfig could add headers of its own.
bool header_safe(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

}  // namespace

Json parse_node_json(std::string_view text) {
  if (core::json_limits_exceeded(text, kKubeAnswerLimits)) return Json(Json::value_t::discarded);
  // Drop what the store never reads, at any depth: the parse keeps a small
  // document however big the Nodes are.
  static const auto keep = [](int, Json::parse_event_t event, Json& parsed) {
    if (event != Json::parse_event_t::key) return true;
    const auto& k = parsed.get_ref<const std::string&>();
    return !(k == "managedFields" || k == "images" || k == "volumesAttached" ||
             k == "volumesInUse" || k == "nodeInfo" || k == "labels" || k == "addresses" ||
             k == "capacity" || k == "allocatable" || k == "daemonEndpoints" || k == "taints" ||
             k == "ownerReferences" || k == "finalizers");
  };
  return Json::parse(text, keep, false);
}

KubeClient::KubeClient(KubeAccess access, const std::atomic<bool>* stop, const sigset_t* stop_signals)
    : access_(std::move(access)), stop_(stop), stop_signals_(stop_signals) {}

std::string KubeClient::bearer() {
  if (!access_.token.empty()) {
    if (!header_safe(access_.token)) {
      throw StoreInputError(access_.source + ": the token holds spaces or control characters");
    }
    return access_.token;
  }
  if (access_.token_file.empty()) return {};
  struct stat st {};
  if (::stat(access_.token_file.c_str(), &st) == 0 &&
      (st.st_mtim.tv_sec != token_mtime_.tv_sec || st.st_mtim.tv_nsec != token_mtime_.tv_nsec ||
       st.st_size != token_size_)) {
    // kubelet rotates projected tokens (about hourly) by swapping the file.
    std::string token;
    try {
      if (auto f = read_small_file(access_.token_file, kMaxTokenBytes, Symlinks::kFollow)) {
        token = std::move(f->text);
      }
    } catch (const FileInputError& e) {
      throw StoreInputError(std::string("service-account token: ") + e.what());
    }
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    if (!header_safe(token)) {
      throw StoreInputError("service-account token " + access_.token_file +
                            " holds spaces or control characters");
    }
    file_token_ = std::move(token);
    token_mtime_ = st.st_mtim;
    token_size_ = st.st_size;
  }
  return file_token_;
}

HttpRequest KubeClient::request(const std::string& method, const std::string& path,
                                long timeout_ms) {
  HttpRequest req;
  req.method = method;
  req.url = access_.server + path;
  req.timeout_ms = timeout_ms;
  req.tls = &access_.tls;
  req.stop = stop_;
  req.stop_signals = stop_signals_;
  req.max_body_bytes = kKubeAnswerLimits.max_bytes;
  req.headers.push_back("Accept: application/json");
  req.headers.push_back("User-Agent: udpringd");
  const std::string token = bearer();
  if (!token.empty()) req.headers.push_back("Authorization: Bearer " + token);
  return req;
}

void KubeClient::fail(const HttpResult& r, const std::string& method, const std::string& path,
                      const KubePermission& perm) {
  const std::string what = method + " " + access_.server + path;
  if (r.too_large) throw StoreInputError("kube " + what + ": " + r.error);
  if (r.ended_by_us) throw KubeError(0, "Stopped", what + ": interrupted: the daemon is stopping");
  if (!r.transferred) {
    if (r.tls_verify_failed) {
      const std::string ca = !access_.tls.ca_file.empty() ? access_.tls.ca_file
                             : !access_.tls.ca_pem.empty() ? "certificate-authority-data"
                                                           : "the system's CA store";
      throw KubeError(0, "TLS", what + ": the API server's certificate does not verify against " +
                                    ca + " (" + r.error + "); give the cluster's CA (" +
                                    access_.source + ")");
    }
    throw KubeError(0, "Unreachable", what + ": API server unreachable (" + r.error + ")");
  }
  const std::string msg = status_message(r.body);
  const std::string reason = status_reason(r.body);
  switch (r.status) {
    case 401:
      throw KubeError(401, reason,
                      what + ": HTTP 401 Unauthorized: the API server rejected our credentials "
                             "from " + access_.source +
                          " (a missing, expired or foreign token or client certificate; in a pod, "
                          "check the ServiceAccount and its mounted token)");
    case 403:
      throw KubeError(
          403, reason,
          what + ": HTTP 403 Forbidden: " + msg + "; the ClusterRole \"" +
              std::string(kKubeClusterRole) + "\" must allow verb \"" + std::string(perm.verb) +
              "\" on resource \"" + std::string(perm.resource) + "\" (apiGroups [\"\"]), for " +
              std::string(perm.why) + ", and be bound to this pod's ServiceAccount");
    default:
      throw KubeError(r.status, reason, what + ": HTTP " + std::to_string(r.status) + ": " + msg);
  }
}

Json KubeClient::get(const std::string& path, const KubePermission& perm, long timeout_ms) {
  const HttpRequest req = request("GET", path, timeout_ms);
  const HttpResult r = http_.perform(req);
  if (!r.transferred || r.ended_by_us || r.status != 200) fail(r, "GET", path, perm);
  const std::string where = "kube GET " + access_.server + path;
  if (const auto why = core::json_limits_exceeded(r.body, kKubeAnswerLimits)) {
    throw StoreInputError(where + ": the answer " + *why);
  }
  Json doc = parse_node_json(r.body);
  if (doc.is_discarded() || !doc.is_object()) {
    throw StoreInputError(where + ": the answer is not a JSON object: " + core::printable(r.body));
  }
  return doc;
}

Json KubeClient::patch(const std::string& path, const Json& patch, const std::string& content_type,
                       const KubePermission& perm) {
  HttpRequest req = request("PATCH", path, 10000);
  req.headers.push_back("Content-Type: " + content_type);
  req.body = patch.dump();
  const HttpResult r = http_.perform(req);
  if (!r.transferred || r.ended_by_us || r.status != 200) fail(r, "PATCH", path, perm);
  return parse_node_json(r.body);  // read by no one: discarded is fine
}

bool KubeClient::watch(const std::string& path, const KubePermission& perm,
                       const std::function<bool(const Json&)>& on_event,
                       const std::atomic<bool>& stop) {
  std::string pending, head;
  bool consumer_done = false;
  const std::string where = "kube GET " + access_.server + path;
  const std::function<bool(const char*, size_t)> sink = [&](const char* data, size_t n) {
    pending.append(data, n);
    // One JSON event per line (the server flushes each). One beyond the
    // limits ends the stream (the watch resumes from the last version seen),
    // and so does a line that never ends.
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      const std::string_view line(pending.data() + start, nl - start);
      if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
      if (const auto why = core::json_limits_exceeded(line, kKubeAnswerLimits)) {
        throw StoreInputError(where + ": an event " + *why);
      }
      const Json ev = parse_node_json(line);
      if (ev.is_discarded() || !ev.is_object() || !ev.contains("type")) {
        // An error answer (a Status object), not an event.
        if (head.empty()) head = std::string(line);
        continue;
      }
      if (!on_event(ev)) {
        consumer_done = true;
        return false;
      }
    }
    pending.erase(0, start);
    if (pending.size() > kKubeAnswerLimits.max_bytes) {
      throw StoreInputError(where + ": an event of more than " +
                            std::to_string(kKubeAnswerLimits.max_bytes) + " bytes");
    }
    return true;
  };
  HttpRequest req = request("GET", path, 0);
  req.sink = &sink;
  req.stop = &stop;
  HttpResult r = http_.perform(req);
  if (consumer_done || stop.load()) return false;
  if (r.too_large || !r.transferred || r.status != 200) {
    if (r.body.empty()) r.body = head.empty() ? pending : head;
    fail(r, "GET", path, perm);
  }
  return true;
}

}  // namespace udpring::io
