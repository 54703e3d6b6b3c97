#include "io/control/peer_icmp_watch.h"

#include <linux/icmp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <system_error>

#include "core/ipv4_addr.h"
#include "encap/udp_encap.h"

namespace udpring::io {
namespace {

constexpr auto kLogEvery = std::chrono::minutes(1);
constexpr uint16_t kOuterHeaderBytes = encap::kEncapOverhead;

std::string hint(const encap::PeerIcmpError& e) {
  switch (e.reason) {
    case encap::PeerUnreach::kPort:
      return "nothing listens on UDP port " + std::to_string(e.peer_port) +
             " there: udpringd or flanneld is not running on that node, or its Backend.Port differs";
    case encap::PeerUnreach::kNet:
    case encap::PeerUnreach::kHost:
      return "a router (" + core::format_ipv4(e.reporter) +
             ") cannot reach it: is the node down, or its lease's PublicIP wrong?";
    case encap::PeerUnreach::kFragmentationNeeded:
      return "a hop on the way (" + core::format_ipv4(e.reporter) + ") carries at most " +
             std::to_string(e.next_hop_mtu) +
             " bytes, less than this node's interface MTU the TUN MTU was sized from";
    case encap::PeerUnreach::kProhibited:
      return "a firewall (" + core::format_ipv4(e.reporter) + ") refuses UDP port " +
             std::to_string(e.peer_port);
    case encap::PeerUnreach::kOther:
      break;
  }
  return "reported by " + core::format_ipv4(e.reporter);
}

}  // namespace

PeerIcmpWatch::PeerIcmpWatch(core::Be32 local, std::vector<uint16_t> local_ports, uint32_t tun_mtu)
    : fd_(socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP)),
      local_(local),
      ports_(std::move(local_ports)),
      bufs_(kBatch),
      tun_mtu_(tun_mtu) {
  if (!fd_) throw std::system_error(errno, std::generic_category(), "raw ICMP socket");
  // The filter's bits are the types to drop: all but Destination Unreachable.
  icmp_filter filter{~(1u << ICMP_DEST_UNREACH)};
  if (setsockopt(fd_.get(), SOL_RAW, ICMP_FILTER, &filter, sizeof filter) != 0) {
    throw std::system_error(errno, std::generic_category(), "ICMP_FILTER on the raw ICMP socket");
  }
  std::sort(ports_.begin(), ports_.end());
}

bool PeerIcmpWatch::drain() {
  bool changed = false;
  std::array<mmsghdr, kBatch> msgs{};
  std::array<iovec, kBatch> iovs{};
  for (int round = 0; round < 8; ++round) {
    for (size_t i = 0; i < kBatch; ++i) {
      iovs[i] = {bufs_[i].data(), bufs_[i].size()};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(fd_.get(), msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) break;  // EAGAIN: nothing more; any other error: try next turn
    for (int i = 0; i < n; ++i) {
      const auto e = encap::parse_peer_icmp_error(
          std::span<const uint8_t>(bufs_[static_cast<size_t>(i)].data(), msgs[static_cast<size_t>(i)].msg_len));
      // Ours: from our address and one of our ports. Other programs' errors
      // reach this socket too.
      if (!e || e->local != local_ || !std::binary_search(ports_.begin(), ports_.end(), e->local_port)) {
        continue;
      }
      note(*e);
      if (e->reason == encap::PeerUnreach::kFragmentationNeeded) learn_path_mtu(*e);
      changed = true;
    }
    if (static_cast<size_t>(n) < kBatch) break;
  }
  return changed;
}

void PeerIcmpWatch::learn_path_mtu(const encap::PeerIcmpError& e) {
  // 0: a router from before RFC 1191, which names no MTU; nothing to learn.
  if (e.next_hop_mtu == 0) return;
  const uint16_t mtu = std::max(e.next_hop_mtu, kMinPathMtu);
  // Only what limits us: the TUN MTU already keeps packets under the
  // interface's MTU.
  if (mtu >= tun_mtu_ + kOuterHeaderBytes) return;
  path_mtus_[e.peer.raw] = {mtu, std::chrono::steady_clock::now()};
}

bool PeerIcmpWatch::apply_path_limits(core::RouteTable& table) {
  const auto now = std::chrono::steady_clock::now();
  bool changed = false;
  for (auto it = path_mtus_.begin(); it != path_mtus_.end();) {
    const core::Be32 peer = core::Be32::from_raw(it->first);
    const bool expired = now - it->second.seen >= kPathMtuExpiry;
    const uint16_t limit = expired ? 0 : static_cast<uint16_t>(it->second.mtu - kOuterHeaderBytes);
    if (table.set_path_limit(peer, limit)) {
      changed = true;
      if (expired) {
        spdlog::info("peer {}: the path MTU {} learned 10 minutes ago has expired; DF packets up "
                     "to the TUN MTU go to it again",
                     core::format_ipv4(peer), it->second.mtu);
      } else {
        spdlog::warn("peer {}: a router on the way carries at most {} bytes: DF packets to its "
                     "pods over {} bytes are answered with ICMP fragmentation needed (counted in "
                     "udpring_drops_total{{reason=\"too_big\"}}), the others are fragmented; "
                     "for 10 minutes after the last report",
                     core::format_ipv4(peer), it->second.mtu, limit);
      }
    }
    it = expired ? path_mtus_.erase(it) : std::next(it);
  }
  return changed;
}

void PeerIcmpWatch::note(const encap::PeerIcmpError& e) {
  const uint32_t peer = e.peer.host();
  auto it = counts_.by_peer.find(peer);
  if (it == counts_.by_peer.end() && counts_.by_peer.size() < PeerUnreachCounts::kMaxPeers) {
    it = counts_.by_peer.emplace(peer, std::array<uint64_t, encap::kPeerUnreachCount>{}).first;
  }
  auto& slot = it == counts_.by_peer.end() ? counts_.others : it->second;
  ++slot[static_cast<size_t>(e.reason)];

  const auto now = std::chrono::steady_clock::now();
  auto [last, first] = logged_.try_emplace(peer, now);
  if (!first && now - last->second < kLogEvery) return;
  last->second = now;
  spdlog::warn("peer {}: ICMP {} for our datagrams to it (from port {}): {}; counted in "
               "udpring_peer_unreachable_total, logged again at most once a minute",
               core::format_ipv4(e.peer), encap::peer_unreach_name(e.reason), e.local_port, hint(e));
  if (logged_.size() > PeerUnreachCounts::kMaxPeers) logged_.erase(logged_.begin());
}

}  // namespace udpring::io
