#include "io/daemon/options.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "io/daemon/flag_table.h"

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
  EXPECT_EQ(o.peer_check, encap::PeerCheck::kStrict);
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
  EXPECT_EQ(o.peer_check, encap::PeerCheck::kOff);  // --no-peer-check
  EXPECT_TRUE(o.multishot);
  EXPECT_EQ(o.verbosity, 1);
}

TEST(Options, PeerCheckModes) {
  EXPECT_EQ(parse({"--peer-check=peer"}).peer_check, encap::PeerCheck::kPeer);
  EXPECT_EQ(parse({"--peer-check", "off"}).peer_check, encap::PeerCheck::kOff);
  EXPECT_EQ(parse({"--peer-check=strict"}).peer_check, encap::PeerCheck::kStrict);
  EXPECT_EQ(parse({"--no-peer-check=false"}).peer_check, encap::PeerCheck::kStrict);
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
  expect_error({"--peer-check=loose"}, "expected strict, peer or off");
  expect_error({"--subnet-mgr=consul"}, "expected etcd, file, static or kube");
  expect_error({"--etcd-endpoints=127.0.0.1:2379"}, "\"127.0.0.1:2379\" is not an http");
  expect_error({"--etcd-prefix=coreos"}, "must start with /");
  expect_error({"--iface-can-reach=gateway"}, "--iface-can-reach \"gateway\"");
  expect_error({"--public-ip=1.2.3"}, "--public-ip \"1.2.3\"");
  expect_error({"--iptables-resync=0"}, "--iptables-resync \"0\"");
  expect_error({"--subnet-lease-renew-margin=0"}, "from 1 to 1439");
  expect_error({"positional"}, "unexpected argument");
  expect_error({"--buffers=100"}, "power of two");
  expect_error({"--healthz-ip=localhost"}, "expected an IPv4 address");
  expect_error({"--healthz-port=70000"}, "--healthz-port \"70000\"");
  expect_error({"--batch=0"}, "--batch \"0\"");
  expect_error({"--cpu-affinity=0,x"}, "--cpu-affinity \"x\"");
}

TEST(Options, FlanneldDefaults) {
  const auto o = parse({});
  EXPECT_EQ(o.subnet_mgr, "etcd");
  EXPECT_EQ(o.etcd_endpoints,
            (std::vector<std::string>{"http://127.0.0.1:4001", "http://127.0.0.1:2379"}));
  EXPECT_EQ(o.etcd_prefix, "/coreos.com/network");
  EXPECT_EQ(o.renew_margin_min, 60u);
  EXPECT_EQ(o.lease_ttl_s, 86400u);
  EXPECT_EQ(o.iptables_resync_s, 5u);
  EXPECT_TRUE(o.iptables_forward_rules);
  EXPECT_FALSE(o.ip_masq);
  EXPECT_EQ(o.subnet_file, "/run/flannel/subnet.env");
}

TEST(Options, BusyPollIsAdaptiveByDefault) {
  const auto d = parse({});
  EXPECT_EQ(d.busy_poll_mode, encap::BusyPollMode::kCheap);
  EXPECT_EQ(d.busy_poll_us, 100u);
  EXPECT_NE(io::describe_options(d, 2).find("busy-poll: auto (up to 100 us"), std::string::npos);
  const auto off = parse({"--busy-poll=0"});
  EXPECT_EQ(off.busy_poll_mode, encap::BusyPollMode::kAlways);
  EXPECT_EQ(off.busy_poll_us, 0u);
  EXPECT_NE(io::describe_options(off, 2).find("busy-poll: 0 us (off)"), std::string::npos);
  EXPECT_EQ(parse({"--busy-poll=0", "--busy-poll=auto"}).busy_poll_mode, encap::BusyPollMode::kCheap);
  const auto eager = parse({"--busy-poll=eager"});
  EXPECT_EQ(eager.busy_poll_mode, encap::BusyPollMode::kEager);
  EXPECT_EQ(eager.busy_poll_us, 100u);
  EXPECT_NE(io::describe_options(eager, 2).find("busy-poll: eager (up to 100 us after activity, backing off on misses)"),
            std::string::npos);
  EXPECT_THROW(parse({"--busy-poll=sometimes"}), UsageError);
}

TEST(Options, FlanneldFlagsTakeEffect) {
  const auto o = parse({"--etcd-endpoints=http://10.0.0.1:2379/,https://10.0.0.2:2379", "-ip-masq",
                        "--iface-regex", "eth.*", "--iface-regex=^ens", "--subnet-lease-renew-margin=30",
                        "--public-ip=192.168.1.10", "--iface-can-reach=8.8.8.8",
                        "-etcd-prefix=/x/network", "--iptables-forward-rules=false",
                        "--ip-masq-fully-random-disable", "--iptables-resync=9", "-v=2"});
  EXPECT_EQ(o.etcd_endpoints,
            (std::vector<std::string>{"http://10.0.0.1:2379", "https://10.0.0.2:2379"}));
  EXPECT_TRUE(o.ip_masq);
  EXPECT_TRUE(o.ip_masq_random_fully_disable);
  EXPECT_FALSE(o.iptables_forward_rules);
  EXPECT_EQ(o.iptables_resync_s, 9u);
  EXPECT_EQ(o.iface_regex, (std::vector<std::string>{"eth.*", "^ens"}));
  EXPECT_EQ(o.renew_margin_min, 30u);
  EXPECT_EQ(o.public_ip, core::parse_ipv4("192.168.1.10"));
  EXPECT_EQ(o.iface_can_reach, core::parse_ipv4("8.8.8.8"));
  EXPECT_EQ(o.etcd_prefix, "/x/network");
  EXPECT_TRUE(o.unimplemented.empty());
  EXPECT_EQ(o.verbosity, 2);
  EXPECT_EQ(parse({"--kube-subnet-mgr"}).subnet_mgr, "kube");
  EXPECT_EQ(parse({"--kube-subnet-mgr=false"}).subnet_mgr, "etcd");
  EXPECT_THROW(parse({"--subnet-lease-renew-margin=1440"}), UsageError);
  EXPECT_THROW(parse({"--ip-masq=perhaps"}), UsageError);
}

TEST(Options, UnimplementedFlanneldFlagsAreAcceptedAndListed) {
  const auto o = parse({"--ip-blackhole-route", "--vmodule=x=2"});
  EXPECT_EQ(o.unimplemented,
            (std::vector<std::string>{"--ip-blackhole-route=true", "--vmodule=x=2"}));
  EXPECT_THROW(parse({"--ip-blackhole-route=perhaps"}), UsageError);
}

TEST(Options, KubeFlags) {
  const auto d = parse({"--kube-subnet-mgr"});
  EXPECT_EQ(d.kube_annotation_prefix, "flannel.alpha.coreos.com");
  EXPECT_TRUE(d.set_node_network_unavailable);
  EXPECT_TRUE(d.kube_api_url.empty());
  EXPECT_TRUE(d.kubeconfig_file.empty());
  const auto o = parse({"--kube-subnet-mgr", "--kube-api-url=https://k:6443",
                           "--kubeconfig-file=/etc/kubeconfig", "--kube-annotation-prefix=example.com",
                           "--set-node-network-unavailable=false"});
  EXPECT_TRUE(o.unimplemented.empty());
  EXPECT_EQ(o.kube_api_url, "https://k:6443");
  EXPECT_EQ(o.kubeconfig_file, "/etc/kubeconfig");
  EXPECT_EQ(o.kube_annotation_prefix, "example.com");
  EXPECT_FALSE(o.set_node_network_unavailable);
  EXPECT_THROW(parse({"--kube-api-url=k:6443"}), UsageError);
  EXPECT_THROW(parse({"--kube-annotation-prefix=a/b"}), UsageError);
}

TEST(Options, EnvironmentOnlyWhenTheFlagIsAbsent) {
  const auto from_env = parse({}, {{"FLANNELD_TUN_NAME", "flannel9"},
                                   {"FLANNELD_WORKERS", "3"},
                                   {"FLANNELD_IP_MASQ", "true"},
                                   {"FLANNELD_ETCD_ENDPOINTS", "http://e:2379"},
                                   {"FLANNELD_IP_BLACKHOLE_ROUTE", "true"},
                                   {"FLANNELD_IFACE", ""}});  // empty: unused
  EXPECT_EQ(from_env.tun_name, "flannel9");
  EXPECT_EQ(from_env.workers, 3u);
  EXPECT_TRUE(from_env.ifaces.empty());
  EXPECT_TRUE(from_env.ip_masq);
  EXPECT_EQ(from_env.etcd_endpoints, (std::vector<std::string>{"http://e:2379"}));
  EXPECT_EQ(from_env.unimplemented, (std::vector<std::string>{"--ip-blackhole-route=true"}));
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
  EXPECT_EQ(o.busy_poll_mode, encap::BusyPollMode::kAlways);  // an explicit window always spins
  EXPECT_TRUE(o.sqpoll);
  EXPECT_TRUE(o.send_zc);
  EXPECT_TRUE(o.print_config);
  const std::string cfg = io::describe_options(o, 2);
  EXPECT_NE(cfg.find("cpu-affinity: 0,1"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("send-zc: on"), std::string::npos) << cfg;
}

// --print-config shows what "auto" and 0 become, not the placeholders.
TEST(Options, PrintConfigResolvesAutomaticSettings) {
  const std::string d = io::describe_options(parse({}), 3);
  EXPECT_NE(d.find("workers: 3 (one per online CPU, at most 4)"), std::string::npos) << d;
  EXPECT_NE(io::describe_options(parse({}), 64).find("workers: 4 (one per online CPU, at most 4)"),
            std::string::npos);
  EXPECT_NE(d.find("buffers: 64 per TUN ring, 64 per UDP ring, per worker (auto)"),
            std::string::npos) << d;
  EXPECT_NE(d.find("buffer-size: TUN 65600 B, UDP 65600 B (auto)\n"), std::string::npos) << d;
  const std::string plain = io::describe_options(parse({"--workers=1", "--no-tun-offload", "--no-gro"}), 3);
  EXPECT_NE(plain.find("workers: 1\n"), std::string::npos) << plain;
  EXPECT_NE(plain.find("buffers: 1024 per TUN ring, 1024 per UDP ring"), std::string::npos) << plain;
  EXPECT_NE(plain.find("buffer-size: TUN 2048 B, UDP 2048 B (auto; MTU-sized"), std::string::npos)
      << plain;
  const std::string set = io::describe_options(parse({"--buffers=512", "--buffer-size=70000"}), 3);
  EXPECT_NE(set.find("buffers: 512 per TUN ring, 512 per UDP ring, per worker; up to "), std::string::npos)
      << set;
  EXPECT_NE(set.find("buffer-size: TUN 70000 B, UDP 70000 B\n"), std::string::npos) << set;
}

// What a worker's buffers must hold: a TSO read or GRO receive with offload,
// else one MTU-sized packet behind the receive header, rounded up.
TEST(Options, BufferPlanFollowsThePathsInUse) {
  const auto d = parse({});
  const io::BufferPlan big = io::plan_buffers(d, true, true, 1472);
  EXPECT_EQ(big.tun_need, 65600u);
  EXPECT_EQ(big.udp_need, 65600u);
  EXPECT_EQ(big.tun_bytes, 65600u);
  EXPECT_EQ(big.tun_count, 64u);
  EXPECT_EQ(big.udp_count, 64u);
  // A refused TUN offload (vnet false) shrinks only the TUN side.
  const io::BufferPlan mixed = io::plan_buffers(d, false, true, 8950);
  EXPECT_EQ(mixed.tun_need, 8950u);
  EXPECT_EQ(mixed.tun_bytes, 16384u);
  EXPECT_EQ(mixed.tun_count, 1024u);
  EXPECT_EQ(mixed.udp_bytes, 65600u);
  EXPECT_EQ(mixed.udp_count, 64u);
}

// --workers=0: one per online CPU up to the cap, so that a big node's
// daemon does not take memory by its core count; a count given is kept.
TEST(Options, DefaultWorkersFollowTheCpusUpToFour) {
  EXPECT_EQ(io::default_workers(0), 1u);
  EXPECT_EQ(io::default_workers(1), 1u);
  EXPECT_EQ(io::default_workers(2), 2u);
  EXPECT_EQ(io::default_workers(4), 4u);
  EXPECT_EQ(io::default_workers(64), io::kDefaultMaxWorkers);
  EXPECT_EQ(io::kDefaultMaxWorkers, 4u);
  EXPECT_EQ(io::resolved_workers(parse({}), 64), 4u);
  EXPECT_EQ(io::resolved_workers(parse({"--workers=16"}), 64), 16u);
  EXPECT_EQ(io::resolved_workers(parse({"--workers=3"}), 2), 3u);
}

TEST(Options, SteeringSwitches) {
  const auto on = parse({});
  EXPECT_TRUE(on.tun_steering);
  EXPECT_TRUE(on.port_steering);
  const auto off = parse({"--no-tun-steering", "--no-port-steering"});
  EXPECT_FALSE(off.tun_steering);
  EXPECT_FALSE(off.port_steering);
  const std::string cfg = io::describe_options(off, 2);
  EXPECT_NE(cfg.find("tun-steering: off"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("port-steering: off"), std::string::npos) << cfg;
}

TEST(Options, HelpMentionsEveryFlag) {
  const std::string help = io::usage_text();
  for (const char* flag : {"--subnet-mgr", "--net-config-path", "--static-subnet", "--static-peer",
                           "--iface", "--tun-name", "--workers", "--tun-txqueuelen",
                           "--no-multishot", "--peer-check", "--no-peer-check", "--subnet-file", "--healthz-ip", "--healthz-port", "--no-gso", "--no-gro", "--no-tun-offload", "--no-coalesce", "--no-uso", "--no-source-port-spread", "--no-port-steering", "--no-tun-steering",
                           "--send-zc", "--no-send-zc", "--cpu-affinity", "--ring-entries", "--batch",
                           "--buffers", "--buffer-size", "--socket-rcvbuf", "--socket-sndbuf",
                           "--busy-poll", "--sqpoll", "--print-config", "-v", "--help", "--version"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  }
}

// The flag table is the only description of the flags; these check that
// what is generated from it holds together.

TEST(Options, EveryFlagIsInHelpAndDocs) {
  const std::string help = io::usage_text();
  const std::string md = io::flags_markdown();
  std::set<std::string> seen;
  for (const io::Flag& f : io::flag_table()) {
    EXPECT_FALSE(f.help.empty()) << f.name;
    EXPECT_FALSE(f.value.accepts.empty()) << f.name;
    EXPECT_EQ(f.value.is_bool, f.metavar.empty()) << f.name << ": a value flag needs a metavar";
    EXPECT_TRUE(f.negation.empty() || f.value.is_bool) << f.name;
    for (const std::string& s : io::flag_spellings(f)) {
      EXPECT_TRUE(seen.insert(s).second) << "two flags spelled " << s;
      const std::string dashed = io::flag_dashes(s);
      EXPECT_NE(help.find(" " + dashed), std::string::npos) << dashed;
      EXPECT_NE(md.find("`" + dashed), std::string::npos) << dashed;
    }
  }
}

// Feeding back a documented default changes nothing, so the docs cannot
// advertise a default the parser would not produce.
TEST(Options, DocumentedDefaultsRoundTrip) {
  const std::string defaults = io::describe_options(parse({}), 4);
  for (const io::Flag& f : io::flag_table()) {
    if (f.value.default_value.empty()) continue;
    const std::string arg = "--" + f.name + "=" + f.value.default_value;
    const io::Options o = parse({arg.c_str()});
    EXPECT_EQ(io::describe_options(o, 4), defaults) << arg;
    EXPECT_TRUE(o.unimplemented.empty()) << arg;
  }
}

TEST(Options, NegationsAndAliases) {
  EXPECT_FALSE(parse({"--send-zc", "--no-send-zc"}).send_zc);
  EXPECT_TRUE(parse({"--no-send-zc=false"}).send_zc);
  EXPECT_TRUE(parse({"-h"}).help);
  EXPECT_TRUE(parse({"--help-markdown"}).help_markdown);
  EXPECT_FALSE(parse({}, {{"FLANNELD_SEND_ZC", "true"}, {"FLANNELD_NO_SEND_ZC", "true"}}).send_zc)
      << "the later spelling in the table wins, as on a command line";
  // Any spelling on the command line keeps the flag's variables out.
  EXPECT_TRUE(parse({"--send-zc"}, {{"FLANNELD_NO_SEND_ZC", "true"}}).send_zc);
  EXPECT_FALSE(parse({}, {{"FLANNELD_HELP", "true"}}).help) << "--help is not read from the environment";
  try {
    parse({"--no-send-zc=maybe"});
    FAIL() << "accepted --no-send-zc=maybe";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "--no-send-zc \"maybe\": expected true or false");
  }
}

TEST(Options, ErrorsSayWhatIsAccepted) {
  auto error = [](std::vector<const char*> args) -> std::string {
    try {
      parse(args);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_EQ(error({"--ring-entries=4"}), "--ring-entries \"4\": expected a whole number from 8 to 32768");
  EXPECT_EQ(error({"--busy-poll=sometimes"}),
            "--busy-poll \"sometimes\": expected auto, eager, or microseconds from 0 to 1000000");
  EXPECT_EQ(error({"--buffers=x"}), "--buffers \"x\": expected a power of two from 16 to 32768");
  EXPECT_EQ(error({"--tun-name="}), "--tun-name \"\": expected an interface name of 1-15 characters");
  EXPECT_EQ(error({"--lease-dir="}), "--lease-dir \"\": expected a directory");
  EXPECT_EQ(error({"-v=11"}), "-v \"11\": expected a whole number from 0 to 10");
}

TEST(Options, PrintConfigHasALinePerSetting) {
  const std::string etcd = "\n" + io::describe_options(parse({}), 2);
  for (const char* key : {"subnet-mgr", "etcd-endpoints", "etcd-prefix", "etcd-tls", "etcd-auth",
                          "subnet-lease-ttl", "subnet-lease-renew-margin", "iface-regex",
                          "iface-can-reach", "public-ip", "ip-masq", "ip-masq-random-fully",
                          "iptables-forward-rules", "iptables-resync", "net-config-path",
                          "static-subnet", "static-peer", "iface", "subnet-file", "tun-name",
                          "workers", "cpu-affinity", "ring-entries", "batch", "buffers",
                          "buffer-size", "tun-txqueuelen", "socket-rcvbuf", "socket-sndbuf",
                          "busy-poll", "sqpoll", "tun-offload", "uso", "coalesce",
                          "trust-outer-checksum", "gso", "gro", "multishot", "send-zc",
                          "source-port-spread", "port-steering", "tun-steering", "peer-check",
                          "healthz"}) {
    EXPECT_NE(etcd.find(std::string("\n") + key + ": "), std::string::npos) << key << "\n" << etcd;
  }
  EXPECT_EQ(etcd.find("lease-dir:"), std::string::npos) << etcd;
  const std::string file = io::describe_options(parse({"--subnet-mgr=file", "--lease-dir=/l"}), 2);
  EXPECT_NE(file.find("lease-dir: /l\n"), std::string::npos) << file;
  EXPECT_EQ(file.find("etcd-"), std::string::npos) << file;
  EXPECT_NE(io::describe_options(parse({"--healthz-ip=127.0.0.1", "--healthz-port=9102"}), 2)
                .find("healthz: 127.0.0.1:9102\n"),
            std::string::npos);
}

// docs/flags.md is committed so that it can be read on the web; this keeps
// it from drifting from the table.
TEST(Options, DocsFlagsMdIsGenerated) {
  std::ifstream in(UDPRING_FLAGS_MD);
  ASSERT_TRUE(in) << "cannot read " << UDPRING_FLAGS_MD;
  std::stringstream file;
  file << in.rdbuf();
  const std::string want = io::flags_markdown();
  if (file.str() == want) return;
  std::istringstream a(file.str()), b(want);
  std::string la, lb;
  int line = 0;
  while (true) {
    ++line;
    const bool more_a = static_cast<bool>(std::getline(a, la));
    const bool more_b = static_cast<bool>(std::getline(b, lb));
    if (la != lb || more_a != more_b || !more_a) break;
  }
  ADD_FAILURE() << UDPRING_FLAGS_MD << " is not what the flag table generates (first difference at line "
                << line << ").\n  file:      " << la << "\n  generated: " << lb
                << "\nRegenerate it from the repository root with:\n"
                   "  build/udpringd --help-markdown > docs/flags.md\n"
                   "(with your build directory in place of build/).";
}

}  // namespace
}  // namespace udpring
