// Completes the requests that wait for device work — stream, event and device synchronizes and
// synchronous pinned copies — from one broker thread that polls an event per wait.
//
// The alternative, a driver host function per wait, costs tens of microseconds per completion on
// a GPU (the driver wakes its callback thread after the stream has drained), about as long as the
// small copy-kernel-copy step a runner does per token. Polling an event answers within a few
// microseconds of the device finishing: the poller spins while a wait is young, then sleeps in
// proportion to how long the youngest wait has taken (at most 20 us), so that a long kernel costs
// little CPU and a short one little latency. A new wait wakes a sleeping poller at once.
//
//   context.completions().watch(stream, [](void* c, CUresult status) { ... }, c);
//
// One per DeviceContext, which makes it; its driver calls go through that context.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "gpubroker/cuda/driver_api.h"

namespace gpubroker::broker {

class DeviceContext;

class CompletionPoller {
 public:
  using Done = void (*)(void* context, cuda::CUresult status);

  // The streams watched must belong to `context`.
  explicit CompletionPoller(const DeviceContext& context);
  ~CompletionPoller();  // waits still pending are completed with CUDA_ERROR_DEINITIALIZED
  CompletionPoller(const CompletionPoller&) = delete;
  CompletionPoller& operator=(const CompletionPoller&) = delete;

  // Calls done(context, status) on the poller's thread once the work queued on `stream` so far
  // has finished (status CUDA_SUCCESS) or failed (the driver's error). Returns the driver's error,
  // and never calls done, when the wait cannot be set up. Any thread.
  cuda::CUresult watch(cuda::CUstream stream, Done done, void* context);

 private:
  struct Wait {
    cuda::CUevent event;
    Done done;
    void* context;
    std::int64_t since_ns;
  };

  void run();
  // How long to pause before the next round, from the age of the youngest pending wait.
  static std::int64_t pause_ns(std::int64_t youngest_age_ns);

  const DeviceContext& context_;
  std::mutex lock_;
  std::condition_variable wake_;
  std::vector<Wait> incoming_;              // guarded by lock_
  std::vector<cuda::CUevent> spare_events_;  // guarded by lock_
  bool stopping_ = false;                    // guarded by lock_
  std::thread thread_;
};

}  // namespace gpubroker::broker
