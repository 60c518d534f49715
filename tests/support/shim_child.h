// Test support: a child process that uses a broker through the shims linked into the test binary.
// The shims keep one session per process, so each case runs its calls in a fork; the body checks
// with EXPECT (child_expect.h) and the child exits with child_status().
//
//   CHECK(testing::in_child(broker, [] { EXPECT(cudaSetDevice(1) == 0, "device 1"); }, "1,0") == 0);
#pragma once

#include <stdlib.h>
#include <sys/types.h>

#include <functional>

#include "tests/support/broker_process.h"
#include "tests/support/broker_ready.h"
#include "tests/support/child_expect.h"

namespace gpubroker::testing {

// Forks a child that talks to `broker` (GPUBROKER_SOCKET), with CUDA_VISIBLE_DEVICES set when
// `visible_devices` is not null, and runs `body` there; -1 when the broker never listened.
inline pid_t start_child(const BrokerProcess& broker, const std::function<void()>& body,
                         const char* visible_devices = nullptr) {
  if (!wait_until_listening(broker.socket_path())) return -1;
  return run_in_child([&] {
    ::setenv("GPUBROKER_SOCKET", broker.socket_path().c_str(), 1);
    if (visible_devices != nullptr) ::setenv("CUDA_VISIBLE_DEVICES", visible_devices, 1);
    body();
    return child_status();
  });
}

// start_child, then its exit status (0 when every EXPECT held).
inline int in_child(const BrokerProcess& broker, const std::function<void()>& body, const char* visible_devices = nullptr) {
  const pid_t child = start_child(broker, body, visible_devices);
  return child > 0 ? wait_for_child(child) : -1;
}

}  // namespace gpubroker::testing
