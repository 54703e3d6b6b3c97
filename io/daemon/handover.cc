#include "io/daemon/handover.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "io/control/fd_passing.h"

namespace udpring::io {
namespace {

constexpr const char* kTake = "take 1 ";  // 1: the protocol's version
constexpr size_t kMaxWaiting = 4;

// Abstract (no file, no permissions to get wrong, gone with the process),
// and so per network namespace: one name per TUN per node.
socklen_t address(const std::string& tun_name, sockaddr_un& sa) {
  sa = {};
  sa.sun_family = AF_UNIX;
  const std::string name = "udpringd-handover/" + tun_name;
  std::memcpy(sa.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

core::UniqueFd seqpacket_socket() {
  core::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) throw std::system_error(errno, std::generic_category(), "handover socket");
  return fd;
}

void set_timeout(int fd, int seconds) {
  const timeval tv{seconds, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool send_message(int fd, const std::string& text, const int* fds = nullptr, int n_fds = 0) {
  return send_with_fds(fd, text, std::span<const int>(fds, static_cast<size_t>(n_fds)));
}

// One message and the descriptors it carries (owned from here on); false on
// EOF, timeout, error or a message that did not fit.
bool receive_message(int fd, std::string& text, std::vector<core::UniqueFd>& fds) {
  std::optional<ReceivedMessage> m = receive_with_fds(fd);
  if (!m) return false;
  for (core::UniqueFd& f : m->fds) fds.push_back(std::move(f));
  if (m->text.empty() || m->truncated) return false;
  text = std::move(m->text);
  return true;
}

std::string flag(bool b) { return b ? "1" : "0"; }

}  // namespace

std::string terms_value(const std::string& line, const std::string& key) {
  std::istringstream in(line);
  for (std::string kv; in >> kv;) {
    if (kv.compare(0, key.size() + 1, key + "=") == 0) return kv.substr(key.size() + 1);
  }
  return "";
}

std::string HandoverTerms::text() const {
  return "tun=" + tun_name + " address=" + address + " mtu=" + std::to_string(mtu) +
         " network=" + network + " bind=" + bind + " workers=" + std::to_string(workers) +
         " tun-offload=" + flag(tun_offload) + " uso=" + flag(uso) +
         " send-sockets=" + flag(send_sockets);
}

std::string terms_difference(const std::string& theirs, const std::string& ours) {
  std::istringstream in(ours);
  for (std::string kv; in >> kv;) {
    const std::string key = kv.substr(0, kv.find('='));
    const std::string mine = kv.substr(key.size() + 1);
    const std::string other = terms_value(theirs, key);
    if (other != mine) return key + "=" + other + " where this daemon runs " + key + "=" + mine;
  }
  return "";
}

bool Successor::give(DataPath path) {
  const size_t n = path.tun.size();
  const std::string head = "give vnet=" + flag(path.vnet) + " uso=" + flag(path.uso) +
                           " steered=" + flag(path.steered) + " workers=" + std::to_string(n) +
                           " stopped=" + std::to_string(path.stopped_ns);
  bool ok = send_message(conn_.get(), head);
  for (size_t i = 0; ok && i < n; ++i) {
    const int fds[3] = {path.tun[i].get(), path.udp[i].get(), path.send[i].get()};
    ok = send_message(conn_.get(), "worker " + std::to_string(i), fds, path.send[i] ? 3 : 2);
  }
  ok = ok && send_message(conn_.get(), "end");
  // Our copies close here; the successor's keep the queues and sockets open.
  if (!ok) spdlog::error("handover to udpringd pid {} failed: {}", pid_, std::strerror(errno));
  return ok;
}

void Successor::release(const std::string& why) {
  (void)send_message(conn_.get(), "released " + why);
}

HandoverListener::HandoverListener(const std::string& tun_name) : fd_(seqpacket_socket()) {
  sockaddr_un sa;
  const socklen_t len = address(tun_name, sa);
  if (bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0 || listen(fd_.get(), 4) != 0 ||
      fcntl(fd_.get(), F_SETFL, O_NONBLOCK) != 0) {
    throw std::system_error(errno, std::generic_category(),
                            "listening for a successor (abstract unix socket udpringd-handover/" +
                                tun_name + ")");
  }
}

std::optional<Successor> HandoverListener::poll() {
  if (!fd_) return std::nullopt;
  // A successor connects early (to learn that we offer a handover) and asks
  // when its own set-up is done, seconds later maybe: connections wait here
  // without holding up the control loop.
  for (;;) {
    core::UniqueFd conn(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) break;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) continue;
    // The name is open to every process in the network namespace: only our
    // own user may take the node's data path.
    if (cred.uid != geteuid()) {
      spdlog::warn("handover refused to pid {}: it runs as uid {}, this udpringd as uid {}",
                   cred.pid, cred.uid, geteuid());
      continue;
    }
    if (waiting_.size() >= kMaxWaiting) {
      spdlog::warn("handover refused to pid {}: {} others are waiting already", cred.pid,
                   waiting_.size());
      continue;
    }
    waiting_.push_back({std::move(conn), cred.pid});
  }
  for (size_t i = 0; i < waiting_.size(); ++i) {
    std::string text;
    std::vector<core::UniqueFd> ignored;
    errno = 0;
    if (receive_message(waiting_[i].conn.get(), text, ignored) && text.rfind(kTake, 0) == 0) {
      Waiting w = std::move(waiting_[i]);
      waiting_.clear();  // the others find nobody left to take from
      const int flags = fcntl(w.conn.get(), F_GETFL);
      (void)fcntl(w.conn.get(), F_SETFL, flags & ~O_NONBLOCK);
      set_timeout(w.conn.get(), 5);
      return Successor(std::move(w.conn), w.pid, text.substr(std::strlen(kTake)));
    }
    if (errno != EAGAIN) {  // gone, or sent something else
      waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i--));
    }
  }
  return std::nullopt;
}

std::optional<Predecessor> Predecessor::find(const std::string& tun_name) {
  core::UniqueFd fd = seqpacket_socket();
  sockaddr_un sa;
  const socklen_t len = address(tun_name, sa);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0) return std::nullopt;
  ucred cred{};
  socklen_t clen = sizeof cred;
  if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || cred.uid != geteuid()) {
    spdlog::warn("the handover socket for {} is held by uid {}, not ours; not using it", tun_name,
                 cred.uid);
    return std::nullopt;
  }
  return Predecessor(std::move(fd), cred.pid);
}

Predecessor::Answer Predecessor::take(const HandoverTerms& terms) {
  // The predecessor answers within a control turn (250 ms) plus the time
  // its workers take to stop.
  set_timeout(conn_.get(), 5);
  const std::string who = "udpringd pid " + std::to_string(pid_);
  if (!send_message(conn_.get(), kTake + terms.text())) {
    throw std::runtime_error("asking " + who + " for the data path: " + std::strerror(errno));
  }
  std::string text;
  std::vector<core::UniqueFd> fds;
  if (!receive_message(conn_.get(), text, fds)) {
    throw std::runtime_error(who + " did not answer the handover within 5 s");
  }
  Answer a;
  if (text.rfind("released ", 0) == 0) {
    a.released = text.substr(9);
    return a;
  }
  if (text.rfind("give ", 0) != 0) throw std::runtime_error(who + " answered \"" + text + "\"");
  DataPath p;
  p.vnet = terms_value(text, "vnet") == "1";
  p.uso = terms_value(text, "uso") == "1";
  p.steered = terms_value(text, "steered") == "1";
  p.stopped_ns = std::stoll("0" + terms_value(text, "stopped"));
  const unsigned n = static_cast<unsigned>(std::stoul("0" + terms_value(text, "workers")));
  if (n != terms.workers) {
    throw std::runtime_error(who + " offers " + std::to_string(n) + " queue(s) for " +
                             std::to_string(terms.workers) + " worker(s)");
  }
  for (unsigned i = 0; i < n; ++i) {
    fds.clear();
    if (!receive_message(conn_.get(), text, fds) || text != "worker " + std::to_string(i) ||
        fds.size() < 2) {
      throw std::runtime_error(who + " broke off the handover at worker " + std::to_string(i));
    }
    p.tun.push_back(std::move(fds[0]));
    p.udp.push_back(std::move(fds[1]));
    p.send.push_back(fds.size() > 2 ? std::move(fds[2]) : core::UniqueFd());
  }
  fds.clear();
  if (!receive_message(conn_.get(), text, fds) || text != "end") {
    throw std::runtime_error(who + " broke off the handover before its end");
  }
  a.path = std::move(p);
  return a;
}

}  // namespace udpring::io
