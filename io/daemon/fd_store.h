#pragma once
// Keeping the data path open across a stop-then-start restart under
// systemd (`systemctl restart`, Restart=on-failure): systemd's file
// descriptor store (FileDescriptorStoreMax= in the unit).
//
// The handover (handover.h) needs the next udpringd running beside this
// one. A restart stops this one first, and once the last descriptor of a
// TUN queue closes the kernel purges its packets and drops whatever is
// routed into the device until a queue opens again. So with --keep-tun a
// udpringd that stops under systemd hands its TUN queues and UDP sockets,
// with a memfd naming the terms they were built on, to systemd (FDSTORE=1).
// The kernel goes on queueing on them, and systemd passes them to the next
// udpringd (LISTEN_FDS, LISTEN_FDNAMES), which takes them when its own
// terms match, as a handover's successor does, and asks systemd to drop its
// copies (FDSTOREREMOVE=1), so that the device still goes with the last
// daemon that does not keep it.

#include <optional>
#include <string>

#include "io/daemon/handover.h"

namespace udpring::io {

/// Gives the queues and sockets of `path`, built on `terms`, to the service
/// manager named by $NOTIFY_SOCKET; ours close with `path`. False with the
/// reason in `why` when it is unset or a send fails.
bool store_data_path(DataPath path, const std::string& terms, std::string& why);

/// What an earlier udpringd stored.
struct StoredDataPath {
  std::string terms;  // HandoverTerms::text() of the daemon that stored it
  DataPath path;
};

/// The data path the service manager passed to this process (LISTEN_PID is
/// ours and LISTEN_FDNAMES names udpring's), or nullopt when none was. The
/// LISTEN_ variables are unset, and the manager is asked to drop its copies
/// of what is taken. Throws std::runtime_error, naming what is missing or
/// unreadable, when the store holds only part of one (its descriptors are
/// closed then).
std::optional<StoredDataPath> take_stored_data_path();

}  // namespace udpring::io
