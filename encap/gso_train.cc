#include "encap/gso_train.h"

namespace udpring::encap {

size_t group_gso_trains(std::span<const PacketRef> pkts, std::span<const EncapResult> results,
                        uint32_t max_segments, std::span<GsoTrain> out) noexcept {
  const size_t n = pkts.size();
  size_t trains = 0;
  size_t i = 0;
  while (i < n) {
    if (results[i].verdict != EncapVerdict::kSend) {
      ++i;
      continue;
    }
    const core::NextHop& hop = *results[i].hop;
    const uint32_t seg = pkts[i].len;
    uint32_t total = seg;
    size_t j = i + 1;
    while (j < n && j - i < max_segments) {
      const EncapResult& next = results[j];
      const uint32_t len = pkts[j].len;
      if (next.verdict != EncapVerdict::kSend || !(*next.hop == hop) || len > seg ||
          total + len > kMaxGsoBytes) {
        break;
      }
      total += len;
      ++j;
      if (len < seg) break;
    }
    out[trains++] = GsoTrain{static_cast<uint32_t>(i), static_cast<uint32_t>(j - i), seg};
    i = j;
  }
  return trains;
}

}  // namespace udpring::encap
