#include "io/options.h"

#include <gtest/gtest.h>

#include <map>

namespace udpring {
namespace {

using io::parse_options;
using io::UsageError;

io::Options parse(std::vector<const char*> args, std::map<std::string, std::string> env = {}) {
  args.insert(args.begin(), "udpringd");
  return parse_options(static_cast<int>(args.size()), args.data(), [env](const char* name) -> const char* {
    const auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(Options, Defaults) {
  const auto o = parse({});
  EXPECT_EQ(o.tun_name, "flannel0");
  EXPECT_EQ(o.workers, 0u);
  EXPECT_EQ(o.net_config_path, "/etc/kube-flannel/net-conf.json");
  EXPECT_TRUE(o.peer_check);
  EXPECT_TRUE(o.multishot);
}

TEST(Options, GoFlagSyntax) {
  const auto o = parse({"-static-subnet=10.5.1.0/24", "--static-peer", "10.5.2.0/24=192.168.1.20",
                        "--static-peer=10.5.3.0/24=192.168.1.30", "--iface", "eth0", "-iface=10.0.0.1",
                        "--workers=2", "--no-peer-check", "--no-multishot=false", "-v=1"});
  ASSERT_TRUE(o.static_subnet);
  EXPECT_EQ(core::format_prefix(*o.static_subnet), "10.5.1.0/24");
  ASSERT_EQ(o.static_peers.size(), 2u);
  EXPECT_EQ(core::format_ipv4(o.static_peers[1].public_ip), "192.168.1.30");
  EXPECT_EQ(o.ifaces, (std::vector<std::string>{"eth0", "10.0.0.1"}));
  EXPECT_EQ(o.workers, 2u);
  EXPECT_FALSE(o.peer_check);
  EXPECT_TRUE(o.multishot);
  EXPECT_EQ(o.verbosity, 1);
}

TEST(Options, ErrorsNameTheFlag) {
  auto expect_error = [](std::vector<const char*> args, const std::string& part) {
    try {
      parse(args);
      ADD_FAILURE() << "accepted " << args.front();
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error({"--bogus"}, "unknown flag --bogus");
  expect_error({"--workers=x"}, "--workers \"x\"");
  expect_error({"--static-peer=10.5.2.0/24"}, "expected SUBNET=IP");
  expect_error({"--static-peer=10.5.2.0/24=1.2.3"}, "\"1.2.3\" is not an IPv4 address");
  expect_error({"--static-subnet=10.5.1.0"}, "--static-subnet \"10.5.1.0\"");
  expect_error({"--tun-name"}, "needs a value");
  expect_error({"--no-peer-check=maybe"}, "expected true or false");
  expect_error({"--subnet-mgr=etcd"}, "only \"static\"");
  expect_error({"positional"}, "unexpected argument");
  expect_error({"--buffers=100"}, "power of two");
  expect_error({"--healthz-ip=localhost"}, "expected an IPv4 address");
  expect_error({"--healthz-port=70000"}, "--healthz-port \"70000\"");
  expect_error({"--batch=0"}, "--batch \"0\"");
  expect_error({"--cpu-affinity=0,x"}, "--cpu-affinity \"x\"");
}

TEST(Options, FlanneldFlagsAreAcceptedAndListed) {
  const auto o = parse({"--etcd-endpoints=http://127.0.0.1:2379", "-ip-masq", "--kube-subnet-mgr=false",
                        "--iface-regex", "eth.*", "--subnet-lease-renew-margin=30", "-v=2"});
  EXPECT_EQ(o.unimplemented,
            (std::vector<std::string>{"--etcd-endpoints=http://127.0.0.1:2379", "--ip-masq=true",
                                      "--kube-subnet-mgr=false", "--iface-regex=eth.*",
                                      "--subnet-lease-renew-margin=30"}));
  EXPECT_EQ(o.verbosity, 2);
  EXPECT_THROW(parse({"--subnet-lease-renew-margin=1440"}), UsageError);
  EXPECT_THROW(parse({"--ip-masq=perhaps"}), UsageError);
}

TEST(Options, EnvironmentOnlyWhenTheFlagIsAbsent) {
  const auto from_env = parse({}, {{"FLANNELD_TUN_NAME", "flannel9"},
                                   {"FLANNELD_WORKERS", "3"},
                                   {"FLANNELD_IP_MASQ", "true"},
                                   {"FLANNELD_IFACE", ""}});  // empty: unused
  EXPECT_EQ(from_env.tun_name, "flannel9");
  EXPECT_EQ(from_env.workers, 3u);
  EXPECT_TRUE(from_env.ifaces.empty());
  EXPECT_EQ(from_env.unimplemented, (std::vector<std::string>{"--ip-masq=true"}));
  const auto flag_wins = parse({"--tun-name=flannel1"}, {{"FLANNELD_TUN_NAME", "flannel9"}});
  EXPECT_EQ(flag_wins.tun_name, "flannel1");
  try {
    parse({}, {{"FLANNELD_WORKERS", "many"}});
    FAIL() << "accepted FLANNELD_WORKERS=many";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("$FLANNELD_WORKERS"), std::string::npos) << e.what();
  }
}

TEST(Options, TuningFlags) {
  const auto o = parse({"--cpu-affinity=0,1", "--ring-entries=256", "--batch=32", "--buffers=512",
                        "--buffer-size=4096", "--busy-poll=50", "--sqpoll", "--send-zc", "--print-config"});
  EXPECT_EQ(o.cpu_affinity, (std::vector<int>{0, 1}));
  EXPECT_EQ(o.ring_entries, 256u);
  EXPECT_EQ(o.batch, 32u);
  EXPECT_EQ(o.buffers, 512u);
  EXPECT_EQ(o.buffer_size, 4096u);
  EXPECT_EQ(o.busy_poll_us, 50u);
  EXPECT_TRUE(o.sqpoll);
  EXPECT_TRUE(o.send_zc);
  EXPECT_TRUE(o.print_config);
  const std::string cfg = io::describe_options(o);
  EXPECT_NE(cfg.find("cpu-affinity: 0,1"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("send-zc: on"), std::string::npos) << cfg;
}

TEST(Options, HelpMentionsEveryFlag) {
  const std::string help = io::usage_text();
  for (const char* flag : {"--subnet-mgr", "--net-config-path", "--static-subnet", "--static-peer",
                           "--iface", "--tun-name", "--workers", "--tun-txqueuelen",
                           "--no-multishot", "--no-peer-check", "--subnet-file", "--healthz-ip", "--healthz-port", "--no-gso", "--no-gro", "--no-tun-offload", "--no-coalesce", "--no-uso", "--no-source-port-spread",
                           "--send-zc", "--no-send-zc", "--cpu-affinity", "--ring-entries", "--batch",
                           "--buffers", "--buffer-size", "--socket-rcvbuf", "--socket-sndbuf",
                           "--busy-poll", "--sqpoll", "--print-config", "-v", "--help", "--version"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace udpring
