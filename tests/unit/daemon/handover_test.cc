// The handover protocol between two processes' worth of sockets in this
// one: a successor finds the listener by TUN name, asks on its terms, and
// gets the very files given (not copies), or the reason nothing was given;
// a user other than ours is turned away.

#include "io/daemon/handover.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "tests/unit/daemon/example_terms.h"

namespace udpring::io {
namespace {

// Unique per run: the abstract names are shared by the whole namespace.
std::string tun_name(const char* what) {
  return std::string("ut-") + what + "-" + std::to_string(getpid());
}

// Polls as the control loop does, for up to 5 s.
std::optional<Successor> wait_for_successor(HandoverListener& l) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    if (std::optional<Successor> s = l.poll()) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::nullopt;
}

ino_t inode(int fd) {
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0);
  return st.st_ino;
}

TEST(Handover, TermsNameTheFirstKeyThatDiffers) {
  EXPECT_EQ(terms_difference(example_terms(2).text(), example_terms(2).text()), "");
  EXPECT_EQ(terms_difference(example_terms(1).text(), example_terms(2).text()),
            "workers=1 where this daemon runs workers=2");
  HandoverTerms mtu = example_terms(2);
  mtu.mtu = 1372;
  EXPECT_EQ(terms_difference(mtu.text(), example_terms(2).text()),
            "mtu=1372 where this daemon runs mtu=1472");
  EXPECT_EQ(terms_difference("tun=flannel0", example_terms(2).text()),
            "address= where this daemon runs address=10.50.1.0");
}

TEST(Handover, NobodyListeningIsNoPredecessor) {
  EXPECT_FALSE(Predecessor::find(tun_name("absent")).has_value());
}

TEST(Handover, TheSuccessorGetsTheSameFilesAndWhatTheKernelGranted) {
  const std::string name = tun_name("give");
  HandoverListener listener(name);
  std::optional<Predecessor> pred = Predecessor::find(name);
  ASSERT_TRUE(pred.has_value());
  EXPECT_EQ(pred->pid(), getpid());
  // Connected but not asking yet: the listener does not wait for it.
  EXPECT_FALSE(listener.poll().has_value());
  EXPECT_TRUE(listener.successor_starting());

  auto answer = std::async(std::launch::async, [&] { return pred->take(example_terms(2)); });
  std::optional<Successor> s = wait_for_successor(listener);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->terms(), example_terms(2).text());

  DataPath p;
  std::vector<ino_t> given;
  for (int w = 0; w < 2; ++w) {
    for (auto* v : {&p.tun, &p.udp, &p.send}) {
      v->emplace_back(eventfd(0, EFD_CLOEXEC));
      given.push_back(inode(v->back().get()));
    }
  }
  p.send[1].reset();  // a worker without a send socket
  given[5] = 0;
  p.vnet = true;
  p.steered = true;
  p.stopped_ns = 123456789;
  ASSERT_TRUE(s->give(std::move(p)));

  Predecessor::Answer a = answer.get();
  ASSERT_TRUE(a.path.has_value()) << a.released;
  const DataPath& got = *a.path;
  ASSERT_EQ(got.tun.size(), 2u);
  ASSERT_EQ(got.udp.size(), 2u);
  ASSERT_EQ(got.send.size(), 2u);
  EXPECT_TRUE(got.vnet);
  EXPECT_FALSE(got.uso);
  EXPECT_TRUE(got.steered);
  EXPECT_EQ(got.stopped_ns, 123456789);
  // Each descriptor is the same open file as the one given, not a copy.
  for (int w = 0; w < 2; ++w) {
    EXPECT_EQ(inode(got.tun[w].get()), given[w * 3]);
    EXPECT_EQ(inode(got.udp[w].get()), given[w * 3 + 1]);
  }
  EXPECT_EQ(inode(got.send[0].get()), given[2]);
  EXPECT_FALSE(got.send[1]);
  // And it works as one: what is written here is read there.
  ASSERT_EQ(eventfd_write(got.tun[0].get(), 7), 0);
  eventfd_t v = 0;
  ASSERT_EQ(eventfd_read(got.tun[0].get(), &v), 0);
  EXPECT_EQ(v, 7u);
}

TEST(Handover, AReleaseSaysWhyAndHandsNothing) {
  const std::string name = tun_name("release");
  HandoverListener listener(name);
  std::optional<Predecessor> pred = Predecessor::find(name);
  ASSERT_TRUE(pred.has_value());
  auto answer = std::async(std::launch::async, [&] { return pred->take(example_terms(1)); });
  std::optional<Successor> s = wait_for_successor(listener);
  ASSERT_TRUE(s.has_value());
  const std::string diff = terms_difference(s->terms(), example_terms(2).text());
  s->release("it asks for " + diff);
  const Predecessor::Answer a = answer.get();
  EXPECT_FALSE(a.path.has_value());
  EXPECT_EQ(a.released, "it asks for workers=1 where this daemon runs workers=2");
}

TEST(Handover, ASuccessorThatGoesAwayOrAPredecessorThatDiesIsNoHang) {
  const std::string name = tun_name("gone");
  {
    HandoverListener listener(name);
    {
      std::optional<Predecessor> quitter = Predecessor::find(name);
      ASSERT_TRUE(quitter.has_value());
      EXPECT_FALSE(listener.poll().has_value());
      EXPECT_TRUE(listener.successor_starting()) << "connected, not asked yet";
    }  // closes without asking
    EXPECT_FALSE(listener.poll().has_value());
    EXPECT_FALSE(listener.successor_starting()) << "gone: nobody is starting any more";
    std::optional<Predecessor> pred = Predecessor::find(name);
    ASSERT_TRUE(pred.has_value());
    auto answer = std::async(std::launch::async, [&] { return pred->take(example_terms(2)); });
    std::optional<Successor> s = wait_for_successor(listener);
    ASSERT_TRUE(s.has_value());
    s.reset();  // the predecessor dies without answering
    EXPECT_THROW(answer.get(), std::runtime_error);
  }
  // The name goes with the listener.
  EXPECT_FALSE(Predecessor::find(name).has_value());
}

TEST(Handover, AnotherUserIsTurnedAway) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run a child as another user";
  const std::string name = tun_name("uid");
  HandoverListener listener(name);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(2);
    // The listener is root's: the successor side will not use it either.
    if (Predecessor::find(name).has_value()) _exit(3);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The listener refused it too, without hanging on it.
  EXPECT_FALSE(listener.poll().has_value());
}

}  // namespace
}  // namespace udpring::io
