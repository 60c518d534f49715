// Test support: checks inside a forked child process, where Catch2's assertions cannot report to
// the parent. EXPECT prints the failed condition with a message to stderr and counts it; the child
// exits with child_status() (0 when nothing failed), which the parent CHECKs.
#pragma once

#include <cstdio>

namespace gpubroker::testing {

inline int child_failures = 0;  // the child's own copy after fork

inline int child_status() { return child_failures == 0 ? 0 : 1; }

}  // namespace gpubroker::testing

#define EXPECT(condition, ...)                                     \
  do {                                                             \
    if (!(condition)) {                                            \
      std::fprintf(stderr, "line %d: %s: ", __LINE__, #condition); \
      std::fprintf(stderr, __VA_ARGS__);                           \
      std::fprintf(stderr, "\n");                                  \
      ++::gpubroker::testing::child_failures;                      \
    }                                                              \
  } while (0)
