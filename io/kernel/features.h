#pragma once
// What the running kernel offers the data plane, for --print-config. Nothing
// outside this process changes: probes that need a device run in a child in
// a network namespace of its own.

#include <string>

namespace udpring::io {

/// "name: value" lines: kernel release, io_uring setup flags and opcodes,
/// UDP GSO/GRO socket options, /dev/net/tun access, then the offload probes.
std::string probe_kernel_features();

/// The daemon's start-up offload checks (TUNSETOFFLOAD with USO, the TUN
/// GSO write and UDP GSO self-tests), run in a forked child inside a new
/// network namespace; needs root (CAP_SYS_ADMIN), else says it did not run.
std::string probe_in_scratch_netns();

}  // namespace udpring::io
