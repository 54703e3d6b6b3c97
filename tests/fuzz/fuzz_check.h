#pragma once
// FUZZ_CHECK states an invariant in a fuzz target. A broken one prints the
// file, line and condition and aborts, which libFuzzer reports as a crash
// and saves the input of. Unlike assert(), it says what broke whatever
// NDEBUG is.

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);   \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
