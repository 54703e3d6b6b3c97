#include "core/ones_sum.h"

#include <atomic>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace udpring::core::detail {

#if defined(__x86_64__)

// Each 64-byte step adds the block's 32 words, zero-extended, into four
// vectors of eight 32-bit lanes. A lane takes one word of at most 0xffff per
// step, so it cannot overflow within 65536 steps; the lanes are widened into
// the 64-bit total every kStepsPerFold steps.
namespace {

// The eight 32-bit lanes of v as four 64-bit sums.
__attribute__((target("avx2"))) __m256i widen(__m256i v) noexcept {
  const __m256i zero = _mm256_setzero_si256();
  return _mm256_add_epi64(_mm256_unpacklo_epi32(v, zero), _mm256_unpackhi_epi32(v, zero));
}

}  // namespace

__attribute__((target("avx2"))) uint64_t word_sum_avx2(const uint8_t* data, size_t len) noexcept {
  constexpr size_t kStepsPerFold = 32768;
  const __m256i zero = _mm256_setzero_si256();
  uint64_t total = 0;
  while (len >= 64) {
    __m256i a0 = zero, a1 = zero, a2 = zero, a3 = zero;
    for (size_t steps = 0; len >= 64 && steps < kStepsPerFold; ++steps) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data));
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + 32));
      a0 = _mm256_add_epi32(a0, _mm256_unpacklo_epi16(x, zero));
      a1 = _mm256_add_epi32(a1, _mm256_unpackhi_epi16(x, zero));
      a2 = _mm256_add_epi32(a2, _mm256_unpacklo_epi16(y, zero));
      a3 = _mm256_add_epi32(a3, _mm256_unpackhi_epi16(y, zero));
      data += 64;
      len -= 64;
    }
    const __m256i s = _mm256_add_epi64(_mm256_add_epi64(widen(a0), widen(a1)),
                                       _mm256_add_epi64(widen(a2), widen(a3)));
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
    total += lanes[0] + lanes[1] + lanes[2] + lanes[3];
  }
  return total + word_sum_scalar(data, len);
}

bool cpu_has_avx2() noexcept { return __builtin_cpu_supports("avx2"); }

#else

uint64_t word_sum_avx2(const uint8_t* data, size_t len) noexcept { return word_sum_scalar(data, len); }
bool cpu_has_avx2() noexcept { return false; }

#endif

namespace {

using WordSum = uint64_t (*)(const uint8_t*, size_t) noexcept;

uint64_t resolve_and_sum(const uint8_t* data, size_t len) noexcept;

// Starts at the resolver, which replaces itself on first use; every thread
// that races there stores the same pointer.
std::atomic<WordSum> g_word_sum{&resolve_and_sum};

WordSum pick() noexcept { return cpu_has_avx2() ? &word_sum_avx2 : &word_sum_scalar; }

uint64_t resolve_and_sum(const uint8_t* data, size_t len) noexcept {
  const WordSum f = pick();
  g_word_sum.store(f, std::memory_order_relaxed);
  return f(data, len);
}

}  // namespace

uint64_t word_sum_wide(const uint8_t* data, size_t len) noexcept {
  return g_word_sum.load(std::memory_order_relaxed)(data, len);
}

}  // namespace udpring::core::detail

namespace udpring::core {

const char* ones_sum_impl() noexcept { return detail::cpu_has_avx2() ? "avx2" : "scalar"; }

}  // namespace udpring::core
