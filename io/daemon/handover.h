#pragma once
// Handing the data path from a running udpringd to the one replacing it,
// without closing anything the kernel queues packets on. A TUN queue that
// closes takes its queued packets with it, and a device with no queue open
// drops all it is routed; a socket that closes drops its receive queue. So
// the running daemon (with --keep-tun, once ready) listens on an abstract
// unix socket named after its TUN, which is private to the node's network
// namespace. A successor started beside it connects, says what it would
// build, and gets the TUN queues and UDP sockets themselves (SCM_RIGHTS)
// when that matches; meanwhile the kernel queues what arrives. When it does
// not match (another lease, MTU, worker count...) the running daemon closes
// its own instead, and the successor builds the device anew. Either way the
// old daemon then serves nothing and waits to be stopped.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/unique_fd.h"

namespace udpring::io {

/// What a successor must have in common with the running daemon to take
/// its queues and sockets as they are: one line of key=value pairs.
struct HandoverTerms {
  std::string tun_name;
  std::string address;  // the TUN's, from the lease
  unsigned mtu = 0;
  std::string network;
  std::string bind;  // the sockets' address:port
  unsigned workers = 0;
  bool tun_offload = false;
  bool uso = false;
  bool send_sockets = false;  // one send socket per worker (port steering)
  std::string text() const;
};

/// What is handed over: per worker a TUN queue, its receiving socket and
/// (maybe empty) send socket; and what the kernel granted on them.
struct DataPath {
  std::vector<core::UniqueFd> tun;
  std::vector<core::UniqueFd> udp;
  std::vector<core::UniqueFd> send;
  bool vnet = false;
  bool uso = false;
  bool steered = false;  // the port steering program is on the sockets' group
  int64_t stopped_ns = 0;  // CLOCK_MONOTONIC when the giver's workers stopped reading
};

/// A successor that connected and asked; answer it with give() or release().
class Successor {
 public:
  Successor(core::UniqueFd conn, pid_t pid, std::string terms)
      : conn_(std::move(conn)), pid_(pid), terms_(std::move(terms)) {}
  pid_t pid() const { return pid_; }
  const std::string& terms() const { return terms_; }
  /// Sends the queues and sockets; false (logged) when the successor went
  /// away meanwhile, and then they are closed here.
  bool give(DataPath path);
  /// Says why nothing is handed over, once ours are closed.
  void release(const std::string& why);

 private:
  core::UniqueFd conn_;
  pid_t pid_;
  std::string terms_;
};

/// In the running daemon: the listening socket, polled each control turn.
class HandoverListener {
 public:
  /// Throws std::system_error when the name is taken or sockets fail.
  explicit HandoverListener(const std::string& tun_name);
  /// A successor of our own user that has asked, or nullopt. Connections
  /// wait until they ask or close; one of another user is logged and
  /// closed. Never blocks.
  std::optional<Successor> poll();
  /// A successor has connected and not asked yet (as of the last poll).
  bool successor_starting() const { return !waiting_.empty(); }

 private:
  struct Waiting {
    core::UniqueFd conn;
    pid_t pid;
  };
  core::UniqueFd fd_;
  std::vector<Waiting> waiting_;
};

/// In the successor: the daemon serving `tun_name`, if it offers a handover.
class Predecessor {
 public:
  /// nullopt when no udpringd listens for this TUN in our network namespace.
  static std::optional<Predecessor> find(const std::string& tun_name);
  pid_t pid() const { return pid_; }

  struct Answer {
    std::optional<DataPath> path;  // set when handed over
    std::string released;          // otherwise why not (the old one closed its own)
  };
  /// Asks for the data path on these terms; waits up to 5 s for the answer.
  /// Throws std::runtime_error when the predecessor answers nonsense or
  /// goes away without answering.
  Answer take(const HandoverTerms& terms);

 private:
  Predecessor(core::UniqueFd conn, pid_t pid) : conn_(std::move(conn)), pid_(pid) {}
  core::UniqueFd conn_;
  pid_t pid_;
};

/// The value of `key` in a terms line ("k=v k=v"), or "" when absent.
std::string terms_value(const std::string& line, const std::string& key);

/// Which key first differs between two terms lines, as "key=A where this
/// daemon runs key=B", or "" when they are the same.
std::string terms_difference(const std::string& theirs, const std::string& ours);

}  // namespace udpring::io
