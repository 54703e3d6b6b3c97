#include "encap/vnet_hdr.h"

#include "core/ones_sum.h"
#include "encap/wire_bytes.h"

namespace udpring::encap {

bool finish_checksum(uint8_t* pkt, size_t len, uint16_t csum_start, uint16_t csum_offset) noexcept {
  if (size_t{csum_start} + csum_offset + 2 > len) return false;
  // The field holds the pseudo-header sum, so summing over it seeds it.
  uint16_t c = static_cast<uint16_t>(~core::ones_sum(pkt + csum_start, len - csum_start) & 0xffff);
  if (c == 0 && csum_offset == 6) c = 0xffff;  // UDP: 0 would mean "no checksum"
  wire::store16(pkt + csum_start + csum_offset, c);
  return true;
}

}  // namespace udpring::encap
