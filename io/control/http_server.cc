#include "io/control/http_server.h"

#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <system_error>
#include <utility>

#include "core/ipv4_addr.h"

namespace udpring::io {
namespace {

// The request line and headers of one request, and the response's headers,
// fit in this with room to spare; a longer header is answered 431 (a longer
// line 414) by libmicrohttpd, and the connection closed.
constexpr size_t kConnectionMemoryBytes = 16 * 1024;
constexpr unsigned kMaxConnections = 1024;
constexpr int kListenBacklog = 1024;

unsigned default_connections() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return kMaxConnections;
  return static_cast<unsigned>(std::clamp<rlim_t>(r.rlim_cur / 2, 1, kMaxConnections));
}

HttpLimits resolve(HttpLimits l) {
  if (l.connections == 0) l.connections = default_connections();
  if (l.per_address == 0) l.per_address = std::max(1u, l.connections / 4);
  return l;
}

// One answer. `persistent` bodies are string literals; others are copied.
// HTTP/1.0 and "Connection: close" as before: one request per connection,
// so a connection's lifetime bounds its request, and no client keeps a
// connection (a slot under the caps) open between scrapes.
MHD_Result answer(MHD_Connection* c, unsigned code, std::string_view body, bool persistent,
                  const char* type = "text/plain") {
  MHD_Response* r = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()),
      persistent ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_Result ok = MHD_set_response_options(r, static_cast<MHD_ResponseFlags>(
                                                  MHD_RF_HTTP_1_0_SERVER | MHD_RF_HTTP_1_0_COMPATIBLE_STRICT),
                                           MHD_RO_END);
  if (ok == MHD_YES) ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (ok == MHD_YES && code == MHD_HTTP_METHOD_NOT_ALLOWED) {
    ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  }
  if (ok == MHD_YES) ok = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ok;
}

bool has_body(MHD_Connection* c) {
  const char* length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  return (length && std::string_view(length) != "0") ||
         MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
}

}  // namespace

struct HttpServer::Hooks {
  static void log(void* cls, const char* fmt, va_list ap) {
    auto* self = static_cast<HttpServer*>(cls);
    char line[256];
    std::vsnprintf(line, sizeof line, fmt, ap);
    std::string_view text(line);
    while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    if (!self->started_) {
      self->start_error_ = text;
    } else {
      // Per connection (a cap reached, a bad request): what a client does
      // must not fill the log.
      spdlog::debug("healthz: {}", text);
    }
  }

  // Every connection gets its lifetime here, on the server thread; the
  // context carries its key until it is closed.
  static void on_connection(void* cls, MHD_Connection* c, void** context,
                            MHD_ConnectionNotificationCode what) {
    auto* self = static_cast<HttpServer*>(cls);
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
      self->open_.fetch_add(1, std::memory_order_relaxed);
      *context = nullptr;  // untracked until it has a key
      const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
      if (!info) return;
      try {
        const uint64_t id = ++self->next_id_;  // from 1: null stays "untracked"
        self->open_by_id_.emplace(id, Open{info->connect_fd, Clock::now() + self->limits_.lifetime});
        *context = reinterpret_cast<void*>(static_cast<uintptr_t>(id));
      } catch (...) {
        // Untracked, it would have no lifetime: drop it instead.
        shutdown(info->connect_fd, SHUT_RDWR);
      }
      return;
    }
    self->open_.fetch_sub(1, std::memory_order_relaxed);
    self->closed_ = true;
    if (*context) self->open_by_id_.erase(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(*context)));
  }

  // Called once the request line and headers are in. Answering right away,
  // before any body, means a body is never read: one announced is refused.
  static MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method,
                               const char*, const char*, size_t*, void** request) {
    auto* self = static_cast<HttpServer*>(cls);
    if (*request) return MHD_NO;  // a second call would be for a body
    *request = self;
    const std::string_view m(method);
    if (m != MHD_HTTP_METHOD_GET && m != MHD_HTTP_METHOD_HEAD) {
      return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n", true);
    }
    if (has_body(c)) return answer(c, MHD_HTTP_CONTENT_TOO_LARGE, "no request body, please\n", true);
    const std::string_view path(url);
    if (path == "/healthz") return answer(c, MHD_HTTP_OK, "udpringd is running\n", true);
    if (path == "/readyz") {
      return self->ready_.load(std::memory_order_acquire)
                 ? answer(c, MHD_HTTP_OK, "ready\n", true)
                 : answer(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n", true);
    }
    if (path == "/metrics") {
      try {
        return answer(c, MHD_HTTP_OK, self->metrics_(), false, "text/plain; version=0.0.4");
      } catch (...) {
        // A failed render (out of memory) only loses this answer.
        return answer(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics unavailable\n", true);
      }
    }
    return answer(c, MHD_HTTP_NOT_FOUND, "try /healthz, /readyz, /metrics\n", true);
  }
};

void HttpServer::StopDaemon::operator()(MHD_Daemon* d) const noexcept { MHD_stop_daemon(d); }

HttpServer::HttpServer(core::Be32 addr, uint16_t port, std::function<std::string()> metrics,
                       HttpLimits limits)
    : limits_(resolve(limits)), metrics_(std::move(metrics)) {
  const std::string where = core::format_ipv4(addr) + ":" + std::to_string(port);
  // Our own listening socket: a failure to bind says why with its errno.
  core::UniqueFd listen_fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listen_fd) throw std::system_error(errno, std::generic_category(), "socket for " + where);
  const int one = 1;
  setsockopt(listen_fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = addr.raw;
  if (bind(listen_fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      listen(listen_fd.get(), kListenBacklog) != 0) {
    throw std::system_error(errno, std::generic_category(), "listen on healthz " + where);
  }
  socklen_t len = sizeof sa;
  getsockname(listen_fd.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  port_ = ntohs(sa.sin_port);
  wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) throw std::system_error(errno, std::generic_category(), "eventfd");

  // No internal thread: ours waits on libmicrohttpd's epoll set and on the
  // lifetimes, which libmicrohttpd does not keep (its timeout is for idle
  // connections only).
  errno = 0;
  daemon_.reset(MHD_start_daemon(
      MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, nullptr, nullptr, &Hooks::on_request, this,
      MHD_OPTION_EXTERNAL_LOGGER, &Hooks::log, this,  // first, or it misses some
      MHD_OPTION_LISTEN_SOCKET, static_cast<MHD_socket>(listen_fd.get()),
      MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(limits_.idle.count()),
      MHD_OPTION_CONNECTION_LIMIT, limits_.connections,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, limits_.per_address,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemoryBytes,
      MHD_OPTION_NOTIFY_CONNECTION, &Hooks::on_connection, this, MHD_OPTION_END));
  if (!daemon_) {
    const int err = errno ? errno : EINVAL;
    throw std::system_error(err, std::generic_category(),
                            "start the healthz server on " + where +
                                (start_error_.empty() ? "" : " (" + start_error_ + ")"));
  }
  listen_fd.release();  // libmicrohttpd's now: MHD_stop_daemon closes it
  const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_.get(), MHD_DAEMON_INFO_EPOLL_FD);
  if (!info) {
    throw std::system_error(EINVAL, std::generic_category(), "healthz server on " + where + ": no epoll set");
  }
  started_ = true;
  thread_ = std::thread([this, epoll_fd = info->epoll_fd] { serve(epoll_fd); });
}

HttpServer::~HttpServer() {
  const uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  daemon_.reset();  // closes what is open, so before open_by_id_ goes
}

// Until the next lifetime ends or libmicrohttpd has something to do; -1:
// nothing pending.
int HttpServer::wait_ms(Clock::time_point now) noexcept {
  long long ms = -1;
  MHD_UNSIGNED_LONG_LONG mhd_ms = 0;
  if (MHD_get_timeout(daemon_.get(), &mhd_ms) == MHD_YES) {
    ms = static_cast<long long>(std::min<MHD_UNSIGNED_LONG_LONG>(mhd_ms, INT_MAX));
  }
  // The first not yet shut down ends first.
  const auto next = std::find_if(open_by_id_.begin(), open_by_id_.end(),
                                 [](const auto& entry) { return !entry.second.shut; });
  if (next != open_by_id_.end()) {
    const long long left = std::max<long long>(
        std::chrono::ceil<std::chrono::milliseconds>(next->second.deadline - now).count(), 0);
    ms = ms < 0 ? left : std::min(ms, left);
  }
  return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

// A connection past its lifetime is shut down under libmicrohttpd's feet:
// its epoll set then reports it, the next read sees the end, and it is
// closed (and forgotten, in on_connection) as if the client had gone.
void HttpServer::close_overdue(Clock::time_point now) noexcept {
  for (auto& [id, open] : open_by_id_) {
    if (open.deadline > now) break;
    if (!open.shut) {
      shutdown(open.fd, SHUT_RDWR);
      open.shut = true;
    }
  }
}

void HttpServer::serve(int epoll_fd) noexcept {
  pollfd pfds[2] = {{epoll_fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
  for (;;) {
    if (poll(pfds, 2, wait_ms(Clock::now())) < 0) {
      // Nothing to do but try again (ENOMEM): a health server that gave up
      // would have the daemon restarted.
      if (errno != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (pfds[1].revents) return;
    MHD_run(daemon_.get());
    // At its connection cap libmicrohttpd takes the listening socket out of
    // its epoll set, and puts it back only in a later run, which nothing
    // would wake: run again while runs close connections.
    while (std::exchange(closed_, false)) MHD_run(daemon_.get());
    close_overdue(Clock::now());
  }
}

}  // namespace udpring::io
