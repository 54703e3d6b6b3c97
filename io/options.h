#pragma once
// udpringd's command line. Flags follow flanneld's Go flag syntax: one or two
// dashes, "--name=value" or "--name value", booleans as "--name" or
// "--name=false".

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ipv4_addr.h"

namespace udpring::io {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct StaticPeer {
  core::Ipv4Prefix subnet;  // the peer's lease
  core::Be32 public_ip;     // where its datagrams go
};

struct Options {
  std::string subnet_mgr = "static";
  std::string net_config_path = "/etc/kube-flannel/net-conf.json";
  std::optional<core::Ipv4Prefix> static_subnet;
  std::vector<StaticPeer> static_peers;
  std::vector<std::string> ifaces;
  std::string tun_name = "flannel0";
  unsigned workers = 0;               // 0 = one per online CPU
  uint32_t tun_txqueuelen = 4000;
  bool multishot = true;
  bool peer_check = true;
  bool gso = true;
  bool gro = true;
  bool tun_offload = true;
  bool coalesce = true;
  int verbosity = 0;
  bool help = false;
  bool version = false;
};

/// Parses argv. Throws UsageError naming the flag and the bad value.
Options parse_options(int argc, const char* const* argv);

/// The --help text: every flag with its default and meaning.
std::string usage_text();

}  // namespace udpring::io
