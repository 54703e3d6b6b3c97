// systemd's fd store as udpringd uses it: what store_data_path() sends to
// $NOTIFY_SOCKET, handed to a child the way systemd passes it back
// (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, descriptors from 3 on), comes
// back as the same open files on the same terms, and systemd is asked to
// drop its copies; a store with a part missing is refused by name.

#include "io/daemon/fd_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "io/control/fd_passing.h"
#include "tests/unit/daemon/example_terms.h"

namespace udpring::io {
namespace {

ino_t inode(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

core::UniqueFd event() { return core::UniqueFd(eventfd(0, EFD_CLOEXEC)); }

struct Message {
  std::string text;
  core::UniqueFd fd;
};

// The service manager's end: an abstract datagram socket named in
// $NOTIFY_SOCKET for as long as the test runs.
class NotifySocket {
 public:
  NotifySocket() : fd_(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) {
    const std::string name = "ut-fdstore-" + std::to_string(getpid());
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path + 1, name.data(), name.size());
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), len), 0);
    setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
  }
  ~NotifySocket() { unsetenv("NOTIFY_SOCKET"); }

  std::vector<Message> drain() {
    std::vector<Message> out;
    while (auto m = receive_with_fds(fd_.get())) {
      out.push_back({std::move(m->text), m->fds.empty() ? core::UniqueFd() : std::move(m->fds[0])});
    }
    return out;
  }

 private:
  core::UniqueFd fd_;
};

std::string name_in(const std::string& text) {
  const size_t at = text.find("FDNAME=");
  return at == std::string::npos ? "" : text.substr(at + 7);
}

// Runs `check` in a child that holds `stored` at 3, 4, ... as systemd would
// pass them; returns its exit code (0: every check passed).
int in_next_process(const std::vector<Message>& stored, const std::function<int()>& check,
                    bool ours = true) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<int> high;
    std::string names;
    for (const Message& m : stored) high.push_back(fcntl(m.fd.get(), F_DUPFD, 100));
    for (size_t i = 0; i < high.size(); ++i) {
      dup2(high[i], 3 + static_cast<int>(i));
      names += (i ? ":" : "") + name_in(stored[i].text);
    }
    setenv("LISTEN_PID", std::to_string(ours ? getpid() : getppid()).c_str(), 1);
    setenv("LISTEN_FDS", std::to_string(stored.size()).c_str(), 1);
    setenv("LISTEN_FDNAMES", names.c_str(), 1);
    _exit(check());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

TEST(FdStore, StoredQueuesAndSocketsComeBackAsTheSameFilesOnTheSameTerms) {
  NotifySocket systemd;
  DataPath p;
  p.vnet = true;
  p.steered = true;
  p.stopped_ns = 123456789;
  std::vector<ino_t> tun, udp, send;
  for (int i = 0; i < 2; ++i) {
    p.tun.push_back(event());
    p.udp.push_back(event());
    p.send.push_back(event());
    tun.push_back(inode(p.tun.back().get()));
    udp.push_back(inode(p.udp.back().get()));
    send.push_back(inode(p.send.back().get()));
  }
  std::string why;
  ASSERT_TRUE(store_data_path(std::move(p), example_terms(2).text(), why)) << why;
  std::vector<Message> stored = systemd.drain();
  ASSERT_EQ(stored.size(), 7u);
  for (const Message& m : stored) {
    EXPECT_EQ(m.text.rfind("FDSTORE=1\nFDNAME=udpring-", 0), 0u) << m.text;
    EXPECT_TRUE(m.fd) << m.text;
  }
  EXPECT_EQ(name_in(stored.back().text), "udpring-terms") << "the terms go last";

  const int code = in_next_process(stored, [&] {
    const auto s = take_stored_data_path();
    if (!s) return 1;
    if (s->terms.rfind(example_terms(2).text(), 0) != 0) return 2;
    if (!s->path.vnet || s->path.uso || !s->path.steered || s->path.stopped_ns != 123456789) {
      return 3;
    }
    if (s->path.tun.size() != 2) return 4;
    for (size_t i = 0; i < 2; ++i) {
      if (inode(s->path.tun[i].get()) != tun[i] || inode(s->path.udp[i].get()) != udp[i] ||
          inode(s->path.send[i].get()) != send[i]) {
        return 5;
      }
    }
    if (std::getenv("LISTEN_FDS") || std::getenv("LISTEN_PID")) return 6;
    return 0;
  });
  EXPECT_EQ(code, 0);
  std::vector<std::string> removed;
  for (const Message& m : systemd.drain()) {
    EXPECT_EQ(m.text.rfind("FDSTOREREMOVE=1\nFDNAME=", 0), 0u) << m.text;
    removed.push_back(name_in(m.text));
  }
  EXPECT_EQ(removed.size(), 7u) << "systemd is asked to drop every copy";

  // Passed to another process (LISTEN_PID not ours): not taken.
  EXPECT_EQ(in_next_process(stored, [] { return take_stored_data_path() ? 1 : 0; }, false), 0);
}

TEST(FdStore, AStoreWithAPartMissingIsRefusedByName) {
  NotifySocket systemd;
  DataPath p;
  for (int i = 0; i < 2; ++i) {
    p.tun.push_back(event());
    p.udp.push_back(event());
    p.send.push_back(core::UniqueFd());  // one socket per worker: none to send from
  }
  std::string why;
  ASSERT_TRUE(store_data_path(std::move(p), example_terms(2).text(), why)) << why;
  std::vector<Message> stored = systemd.drain();
  ASSERT_EQ(stored.size(), 5u) << "no send sockets stored";
  const auto refused_for = [](const std::string& what) {
    return [what] {
      try {
        (void)take_stored_data_path();
      } catch (const std::runtime_error& e) {
        return std::string(e.what()).find(what) != std::string::npos ? 0 : 2;
      }
      return 1;
    };
  };
  std::vector<Message> no_udp1;
  for (Message& m : stored) {
    if (name_in(m.text) == "udpring-udp-1") continue;
    no_udp1.push_back({m.text, core::UniqueFd(dup(m.fd.get()))});
  }
  EXPECT_EQ(in_next_process(no_udp1, refused_for("the fd store holds no udpring-udp-1 of the 2 "
                                                 "worker(s) udpring-terms names")),
            0);
  stored.pop_back();  // the terms
  EXPECT_EQ(in_next_process(stored, refused_for("the fd store holds no udpring-terms")), 0);
}

}  // namespace
}  // namespace udpring::io
