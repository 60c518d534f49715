// Test support: waits for something another thread or process is still doing (a session reclaimed,
// a thread joined, a heartbeat published) instead of looking once. A look taken while the thing is
// in progress fails by chance on a loaded machine; a poll to a generous deadline fails only when
// it never happens, and says how long it took when it does.
//
//   const testing::Waited reclaimed = testing::poll_until([&] { return observer.totals().sessions == 1; });
//   INFO("the session was reclaimed after " << reclaimed.milliseconds << " ms");
//   CHECK(reclaimed);
//
// Header-only: used by the Catch2 tests, by stress_driver and inside forked children alike.
#pragma once

#include <chrono>
#include <thread>

namespace gpubroker::testing {

// Long enough for any reclaim, join or heartbeat on a 2-core machine under a CPU hog per core
// with the sanitizers on; a check that needs longer is waiting for something that never happens.
inline constexpr std::chrono::milliseconds kSettleTimeout{30'000};

struct Waited {
  bool held = false;
  double milliseconds = 0;  // until it held; the whole wait when it did not
  explicit operator bool() const { return held; }
};

// Calls `holds` until it returns true or `timeout` has passed, pausing `every` between calls.
// Blocks the calling thread.
template <class Predicate>
Waited poll_until(Predicate&& holds, std::chrono::milliseconds timeout = kSettleTimeout,
                  std::chrono::microseconds every = std::chrono::milliseconds(2)) {
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed_ms = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  for (;;) {
    if (holds()) return {true, elapsed_ms()};
    if (std::chrono::steady_clock::now() - start > timeout) return {false, elapsed_ms()};
    std::this_thread::sleep_for(every);
  }
}

}  // namespace gpubroker::testing
