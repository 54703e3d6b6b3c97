// The health server (io/control/http_server.cc, on libmicrohttpd) as a
// client reaches it: the input is the bytes of one connection, sent to a
// server on 127.0.0.1 and followed by the end of the client's stream. The
// server must answer with one of the statuses it knows or close, and go on
// serving: after every input, a plain probe must still get 200.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "core/unique_fd.h"
#include "io/control/http_server.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace udpring;

io::HttpServer& server() {
  static const std::unique_ptr<io::HttpServer> s = [] {
    // Short deadlines: a request cut short is closed when its lifetime
    // ends (libmicrohttpd does not always close at the client's end of stream).
    io::HttpLimits limits;
    limits.idle = std::chrono::seconds(1);
    limits.lifetime = std::chrono::milliseconds(1000);
    auto p = std::make_unique<io::HttpServer>(core::Be32::from_host(INADDR_LOOPBACK), 0,
                                              [] { return std::string("udpring_up 1\n"); }, limits);
    p->set_ready();
    return p;
  }();
  return *s;
}

// Sends `request`, ends the stream, and returns what came back before the
// server closed, which it must do within the connection's lifetime.
std::string exchange(std::string_view request) {
  core::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  FUZZ_CHECK(fd);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(server().port());
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  FUZZ_CHECK(connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  size_t off = 0;
  while (off < request.size()) {
    const ssize_t n = send(fd.get(), request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server closed early (a cap reached): fine
    off += static_cast<size_t>(n);
  }
  shutdown(fd.get(), SHUT_WR);
  // Closed within the lifetime, give or take a run of the server's loop.
  // libFuzzer's timer signal interrupts poll() every second, so the wait is
  // against a deadline, not one call (a harness that took EINTR for a
  // timeout once reported a cut request as never closed).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(2500);
  std::string answer;
  char buf[4096];
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    FUZZ_CHECK(left.count() > 0);
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    FUZZ_CHECK(ready == 1);
    const ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
    FUZZ_CHECK(answer.size() < (1u << 20));
  }
  return answer;
}

bool known_status(std::string_view answer) {
  if (answer.size() < 12 || answer.substr(0, 7) != "HTTP/1.") return false;
  const std::string_view code = answer.substr(9, 3);
  for (const char* c : {"200", "400", "404", "405", "413", "414", "431", "500", "501", "503", "505"}) {
    if (code == c) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string answer = exchange({reinterpret_cast<const char*>(data), size});
  FUZZ_CHECK(answer.empty() || known_status(answer));
  const std::string probe = exchange("GET /healthz HTTP/1.0\r\n\r\n");
  FUZZ_CHECK(probe.rfind("HTTP/1.0 200", 0) == 0 || probe.rfind("HTTP/1.1 200", 0) == 0);
  return 0;
}
