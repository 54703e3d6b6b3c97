#pragma once
// A packet as the pipeline sees it: bytes that live in a worker-owned buffer.
// Stages patch headers in place through it and never copy the payload.

#include <cstdint>

#include "core/be32.h"

namespace udpring::encap {

struct PacketRef {
  uint8_t* data = nullptr;  // first byte of the IPv4 header; not owned
  uint32_t len = 0;         // bytes valid at data
  // The kernel validated a non-zero UDP checksum covering these bytes on
  // their way in (they came in a UDP GRO/GSO receive), so they are exactly
  // what the sending host's kernel handed over.
  bool outer_checksum_verified = false;
};

}  // namespace udpring::encap
