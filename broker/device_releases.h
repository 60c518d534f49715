// Device memory a session has let go of, freed on a thread of its own.
//
// cuMemFree waits for all the work queued in its context, not only the work of the session that
// frees: with sessions sharing a context, one session's cudaFree would wait for another's kernels
// (seconds behind a long prompt). So the session forgets the allocation at once (no request of it
// can name the range again), waits for its own streams only, and hands the pointer here; this
// thread calls cuMemFree, and only then can the driver give the range to anyone else. An
// allocation the driver refuses for want of memory waits for what is queued (wait_until_released)
// and tries once more. A session asking for the free memory counts its own releases that have not
// happened yet (those with a ticket past released_through()) as free, which is what a native
// cudaFree, having waited, would have left.
//
//   const auto ticket = context.releases().free_later(pointer, bytes);  // any thread
//   bool done = context.releases().released_through() >= ticket;
//
// One per DeviceContext; its thread starts and stops with the context, which frees whatever is
// still queued first. Where no thread could be started, free_later frees inline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "gpubroker/cuda/driver_api.h"

namespace gpubroker::broker {

class DeviceContext;

class DeferredFrees {
 public:
  explicit DeferredFrees(const DeviceContext& context);
  ~DeferredFrees();  // frees what is queued, then stops the thread
  DeferredFrees(const DeferredFrees&) = delete;
  DeferredFrees& operator=(const DeferredFrees&) = delete;

  using Ticket = std::uint64_t;  // releases are done in the order they were queued

  Ticket free_later(cuda::CUdeviceptr pointer, std::uint64_t bytes);

  // Bytes queued or being freed.
  [[nodiscard]] std::uint64_t pending_bytes() const;

  // Every release with a ticket up to this one is done.
  [[nodiscard]] Ticket released_through() const;

  // Returns once everything queued so far has been freed. Any thread but this one's.
  void wait_until_released();

 private:
  struct Release {
    cuda::CUdeviceptr pointer;
    std::uint64_t bytes;
  };

  void run();
  void release(const Release& r) const;

  const DeviceContext& context_;
  mutable std::mutex lock_;
  std::condition_variable work_;      // a release queued, or stopping
  std::condition_variable released_;  // a release done
  std::deque<Release> queue_;         // guarded by lock_
  std::uint64_t pending_bytes_ = 0;   // guarded by lock_: queued or in cuMemFree
  std::uint64_t queued_total_ = 0;    // guarded by lock_: releases ever queued
  std::uint64_t done_total_ = 0;      // guarded by lock_: releases ever finished
  bool stopping_ = false;             // guarded by lock_
  std::thread thread_;                // not joinable: none could be started
};

}  // namespace gpubroker::broker
