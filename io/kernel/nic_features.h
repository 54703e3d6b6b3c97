#pragma once
// A network device's offload features as `ethtool -k` names them, read with
// the ethtool ioctl (no ethtool binary needed).

#include <optional>
#include <string>
#include <string_view>

namespace udpring::io {

/// Whether feature `name` (e.g. "tx-udp-segmentation") is active on device
/// `ifname` of the current network namespace; nullopt when the device or
/// the feature is unknown or the kernel does not answer.
std::optional<bool> nic_feature_active(const std::string& ifname, std::string_view name);

}  // namespace udpring::io
