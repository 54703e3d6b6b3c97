#pragma once
// The RFC 1071 ones'-complement sum, the one loop that reads every payload
// byte in user space (TSO split, coalescing checks). Sums of 1 KiB and more
// go to an AVX2 loop when the CPU has it, picked once at first use.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace udpring::core {

namespace detail {

/// Sum of the native-order 16-bit words of `len` bytes, unfolded; a trailing
/// odd byte counts as the high half of a zero-padded big-endian word.
inline uint64_t word_sum_scalar(const uint8_t* data, size_t len) noexcept {
  uint64_t sum = 0;
  // 32-bit words into a 64-bit accumulator: no carry handling in the loop,
  // and the compiler vectorizes it. 2^16 = 1 (mod 0xffff), so summing 32-bit
  // words folds to the same 16-bit sum as summing 16-bit words.
  while (len >= 4) {
    uint32_t w;
    std::memcpy(&w, data, 4);
    sum += w;
    data += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    std::memcpy(&w, data, 2);
    sum += w;
    data += 2;
    len -= 2;
  }
  if (len) {
    const uint8_t pad[2] = {data[0], 0};
    uint16_t w;
    std::memcpy(&w, pad, 2);
    sum += w;
  }
  return sum;
}

/// The same sum with AVX2. Call only when cpu_has_avx2().
uint64_t word_sum_avx2(const uint8_t* data, size_t len) noexcept;

bool cpu_has_avx2() noexcept;

/// word_sum_avx2 or word_sum_scalar, whichever the CPU runs.
uint64_t word_sum_wide(const uint8_t* data, size_t len) noexcept;

}  // namespace detail

/// Below this the call and the vector set-up cost more than they save.
inline constexpr size_t kWideSumMinBytes = 256;

/// "avx2" or "scalar": the loop sums of kWideSumMinBytes and more run on.
const char* ones_sum_impl() noexcept;

/// Ones'-complement sum of `len` bytes (RFC 1071), folded to 16 bits, not
/// inverted, in host order. `initial` lets callers chain sums (pseudo
/// headers). Words are added in native byte order and the folded result is
/// swapped once (RFC 1071 §2B: the sum is byte-order independent). A non-zero
/// input never sums to 0, so a verifying packet gives 0xffff.
inline uint32_t ones_sum(const uint8_t* data, size_t len, uint32_t initial = 0) noexcept {
  uint64_t sum = len >= kWideSumMinBytes ? detail::word_sum_wide(data, len)
                                         : detail::word_sum_scalar(data, len);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  auto folded = static_cast<uint32_t>(sum);
  if constexpr (std::endian::native == std::endian::little) {
    folded = ((folded & 0xff) << 8) | (folded >> 8);
  }
  uint32_t total = folded + initial;
  while (total >> 16) total = (total & 0xffff) + (total >> 16);
  return total;
}

}  // namespace udpring::core
