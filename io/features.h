#pragma once
// What the running kernel offers the data plane, probed without side effects
// (no device is created), for --print-config.

#include <string>

namespace udpring::io {

/// "name: value" lines: kernel release, io_uring setup flags and opcodes,
/// UDP GSO/GRO socket options, /dev/net/tun access.
std::string probe_kernel_features();

}  // namespace udpring::io
