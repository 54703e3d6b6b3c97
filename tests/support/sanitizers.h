#pragma once
// Whether this program was built with a sanitizer, for the budgets a
// sanitizer changes (memory, iterations). GCC says so with __SANITIZE_*__,
// clang only through __has_feature.

#if defined(__has_feature)
#define UDPRING_HAS_FEATURE(x) __has_feature(x)
#else
#define UDPRING_HAS_FEATURE(x) 0
#endif

namespace udpring::test {

#if defined(__SANITIZE_ADDRESS__) || UDPRING_HAS_FEATURE(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__) || UDPRING_HAS_FEATURE(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif

}  // namespace udpring::test

#undef UDPRING_HAS_FEATURE
