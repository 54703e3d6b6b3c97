// IptablesManager against real iptables, inside namespaces made for the test.
// Every iptables command here, the test's own and the manager's, runs in the
// test namespace: the manager from a run_in_netns thread (its children
// inherit that thread's namespace, checked first), the test's through
// `ip netns exec`. The host's own rules are never read or written.

#include "io/control/iptables_rules.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "tests/support/netns.h"

namespace udpring::test {
namespace {

core::Ipv4Prefix prefix(const char* text) { return *core::parse_prefix(text); }

std::string ns_name(const char* tag) { return "uript" + std::to_string(getpid() % 100000) + tag; }

// Skips on a developer machine without iptables, fails under CI=true.
#define REQUIRE_IPTABLES()                                                             \
  do {                                                                                 \
    UDPRING_REQUIRE_INTEGRATION();                                                     \
    if (sh("command -v iptables-restore >/dev/null 2>&1") != 0) {                      \
      const char* ci_ = std::getenv("CI");                                             \
      if (ci_ && std::string(ci_) == "true") FAIL() << "iptables is not installed";    \
      GTEST_SKIP() << "iptables is not installed";                                     \
    }                                                                                  \
  } while (0)

// A child started from a run_in_netns thread must land in the namespace, or
// the manager would rewrite the host's rules: check before trusting it.
void expect_children_in(const Netns& ns) {
  struct stat want {};
  ASSERT_EQ(stat(("/run/netns/" + ns.name()).c_str(), &want), 0);
  std::string got;
  run_in_netns(ns.name(), [&] { got = sh_out("stat -L -c %i /proc/self/ns/net"); });
  ASSERT_FALSE(got.empty());
  ASSERT_EQ(std::stoull(got), static_cast<unsigned long long>(want.st_ino));
}

io::ChainRules saved(const Netns& ns, const std::string& table) {
  return io::parse_iptables_save(sh_out(ns.exec() + "iptables-save -t " + table));
}

long jumps(const io::ChainRules& table, const io::RuleSet& set) {
  const auto it = table.find(set.parent);
  return it == table.end() ? 0 : std::count(it->second.begin(), it->second.end(), set.jump);
}

// Deletes one rule by hand, the way an admin or another tool would.
void delete_rule(const Netns& ns, const io::RuleSet& set, const std::string& chain, const std::string& spec) {
  sh_ok(ns.exec() + "iptables -t " + set.table + " -D " + chain + " " + spec);
}

TEST(Iptables, ApplyCheckAndResyncKeepOrder) {
  REQUIRE_IPTABLES();
  Netns ns(ns_name("a"));
  ASSERT_NO_FATAL_FAILURE(expect_children_in(ns));
  bool random_fully = false;
  run_in_netns(ns.name(), [&] { random_fully = io::iptables_supports_random_fully(); });
  const io::RuleSet set = io::masq_rules(prefix("10.5.0.0/16"), prefix("10.5.34.0/24"), random_fully);
  io::IptablesManager mgr({set});

  bool ok = false;
  run_in_netns(ns.name(), [&] {
    mgr.apply();
    ok = mgr.check();
  });
  EXPECT_TRUE(ok);
  io::ChainRules nat = saved(ns, "nat");
  EXPECT_EQ(nat["FLANNEL-POSTRTG"], set.rules);  // generated text == iptables-save's text
  EXPECT_EQ(jumps(nat, set), 1);

  // A rule goes missing: check notices, resync puts it back in its place.
  delete_rule(ns, set, set.chain, set.rules[2]);
  EXPECT_EQ(saved(ns, "nat")["FLANNEL-POSTRTG"].size(), set.rules.size() - 1);
  bool before = true, rebuilt = false, after = false, again = true;
  run_in_netns(ns.name(), [&] {
    before = mgr.check();
    rebuilt = mgr.resync();
    after = mgr.check();
    again = mgr.resync();
  });
  EXPECT_FALSE(before);
  EXPECT_TRUE(rebuilt);
  EXPECT_TRUE(after);
  EXPECT_FALSE(again);
  EXPECT_EQ(mgr.rebuilds(), 1u);
  nat = saved(ns, "nat");
  EXPECT_EQ(nat["FLANNEL-POSTRTG"], set.rules);
  EXPECT_EQ(jumps(nat, set), 1);

  // The jump goes missing: it comes back once, and apply() again adds nothing.
  delete_rule(ns, set, set.parent, set.jump);
  run_in_netns(ns.name(), [&] {
    rebuilt = mgr.resync();
    mgr.apply();
  });
  EXPECT_TRUE(rebuilt);
  EXPECT_EQ(mgr.rebuilds(), 2u);
  nat = saved(ns, "nat");
  EXPECT_EQ(nat["FLANNEL-POSTRTG"], set.rules);
  EXPECT_EQ(jumps(nat, set), 1);

  // A duplicated jump (an old flannel, a second daemon) is drift too, and the
  // rebuild leaves one.
  sh_ok(ns.exec() + "iptables -t nat -I POSTROUTING " + set.jump);
  run_in_netns(ns.name(), [&] { rebuilt = mgr.resync(); });
  EXPECT_TRUE(rebuilt);
  EXPECT_EQ(jumps(saved(ns, "nat"), set), 1);
}

TEST(Iptables, NewSubnetReplacesTheOldRules) {
  REQUIRE_IPTABLES();
  Netns ns(ns_name("s"));
  ASSERT_NO_FATAL_FAILURE(expect_children_in(ns));
  const io::RuleSet old_set = io::masq_rules(prefix("10.5.0.0/16"), prefix("10.5.34.0/24"), false);
  const io::RuleSet new_set = io::masq_rules(prefix("10.6.0.0/16"), prefix("10.6.7.0/24"), false);
  // Someone else's rule in POSTROUTING must survive, and stay first.
  sh_ok(ns.exec() + "iptables -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE");

  run_in_netns(ns.name(), [&] { io::IptablesManager({old_set}).apply(); });
  EXPECT_EQ(saved(ns, "nat")["FLANNEL-POSTRTG"], old_set.rules);
  // A leftover by hand in our chain, as a crashed or older daemon might leave.
  sh_ok(ns.exec() + "iptables -t nat -A FLANNEL-POSTRTG -s 10.5.99.0/24 -j RETURN");

  bool ok = false;
  run_in_netns(ns.name(), [&] {
    io::IptablesManager mgr({new_set});
    mgr.apply();
    ok = mgr.check();
  });
  EXPECT_TRUE(ok);
  io::ChainRules nat = saved(ns, "nat");
  EXPECT_EQ(nat["FLANNEL-POSTRTG"], new_set.rules);
  const std::vector<std::string> post = {"-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE", new_set.jump};
  EXPECT_EQ(nat["POSTROUTING"], post);
  EXPECT_EQ(sh_out(ns.exec() + "iptables-save -t nat").find("10.5."), std::string::npos);
}

TEST(Iptables, ForwardAndMasqTogether) {
  REQUIRE_IPTABLES();
  Netns ns(ns_name("f"));
  ASSERT_NO_FATAL_FAILURE(expect_children_in(ns));
  const io::RuleSet masq = io::masq_rules(prefix("10.5.0.0/16"), prefix("10.5.34.0/24"), false);
  const io::RuleSet fwd = io::forward_rules(prefix("10.5.0.0/16"));
  sh_ok(ns.exec() + "iptables -P FORWARD DROP");  // as Docker leaves it
  io::IptablesManager mgr({masq, fwd});

  run_in_netns(ns.name(), [&] { mgr.apply(); });
  io::ChainRules filter = saved(ns, "filter");
  EXPECT_EQ(filter["FLANNEL-FWD"], fwd.rules);
  EXPECT_EQ(jumps(filter, fwd), 1);
  EXPECT_EQ(saved(ns, "nat")["FLANNEL-POSTRTG"], masq.rules);

  delete_rule(ns, fwd, fwd.chain, fwd.rules[0]);
  bool before = true, rebuilt = false;
  run_in_netns(ns.name(), [&] {
    before = mgr.check();
    rebuilt = mgr.resync();
  });
  EXPECT_FALSE(before);
  EXPECT_TRUE(rebuilt);
  EXPECT_EQ(mgr.rebuilds(), 1u);
  filter = saved(ns, "filter");
  EXPECT_EQ(filter["FLANNEL-FWD"], fwd.rules);
  EXPECT_EQ(jumps(filter, fwd), 1);
  EXPECT_EQ(jumps(saved(ns, "nat"), masq), 1);
}

// A kube-proxy node has thousands of nat rules: iptables-save's output is
// then far bigger than a pipe buffer, and must still be read whole.
TEST(Iptables, ChecksAgainstABigTable) {
  REQUIRE_IPTABLES();
  Netns ns(ns_name("b"));
  ASSERT_NO_FATAL_FAILURE(expect_children_in(ns));
  std::string script = "*nat\n:KUBE-LIKE - [0:0]\n";
  for (int i = 0; i < 3000; ++i) {
    script += "-A KUBE-LIKE -s 10.200." + std::to_string(i / 250) + "." + std::to_string(i % 250) +
              "/32 -m comment --comment \"a service with a long enough name\" -j RETURN\n";
  }
  script += "COMMIT\n";
  const std::string file = "/tmp/" + ns.name() + ".rules";
  std::ofstream(file) << script;
  sh_ok(ns.exec() + "iptables-restore --noflush " + file);
  sh("rm -f " + file);
  ASSERT_GT(sh_out(ns.exec() + "iptables-save -t nat").size(), 200000u);

  const io::RuleSet set = io::masq_rules(prefix("10.5.0.0/16"), prefix("10.5.34.0/24"), false);
  io::IptablesManager mgr({set});
  bool ok = false, rebuilt = true;
  run_in_netns(ns.name(), [&] {
    mgr.apply();
    ok = mgr.check();
    rebuilt = mgr.resync();
  });
  EXPECT_TRUE(ok);
  EXPECT_FALSE(rebuilt);
  EXPECT_EQ(saved(ns, "nat")["KUBE-LIKE"].size(), 3000u);
}

TEST(Iptables, FailureCarriesIptablesStderr) {
  REQUIRE_IPTABLES();
  Netns ns(ns_name("e"));
  ASSERT_NO_FATAL_FAILURE(expect_children_in(ns));
  io::RuleSet bad = io::forward_rules(prefix("10.5.0.0/16"));
  bad.rules.push_back("-j NO-SUCH-CHAIN");
  std::string error;
  run_in_netns(ns.name(), [&] {
    try {
      io::IptablesManager({bad}).apply();
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
  });
  EXPECT_NE(error.find("iptables-restore failed"), std::string::npos) << error;
  EXPECT_NE(error.find("NO-SUCH-CHAIN"), std::string::npos) << error;
  // The table's COMMIT is atomic: nothing of the bad set was left behind.
  EXPECT_EQ(saved(ns, "filter").count("FLANNEL-FWD"), 0u);
}

}  // namespace
}  // namespace udpring::test
