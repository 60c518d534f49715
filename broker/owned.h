// A driver object a session holds. The owner releases it, and counts it out of the broker's
// totals, when it is destroyed; so a session's table of owners is reclaimed by destroying it, and
// nothing a client created can outlive its session.
//
//   std::unordered_map<std::uint64_t, Owned<cuda::CUstream, DestroyStream>> streams;
//   streams.emplace(id, Owned(stream, DestroyStream{&driver}, &counters.streams));
//   streams.erase(id);  // cuStreamDestroy, and one stream fewer in the totals
//
// Move-only. Used on the session's dispatcher thread only (and by its destructor).
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

#include "broker/device_binding.h"
#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/driver_api.h"

namespace gpubroker::broker {

template <class Handle, class Release>
class Owned {
 public:
  Owned(Handle handle, Release release, std::atomic<std::uint64_t>* counter)
      : handle_(std::move(handle)), release_(release), counter_(counter), held_(true) {
    if (counter_ != nullptr) counter_->fetch_add(1, std::memory_order_relaxed);
  }
  Owned(Owned&& other) noexcept
      : handle_(std::move(other.handle_)), release_(other.release_), counter_(other.counter_),
        held_(std::exchange(other.held_, false)) {}
  Owned& operator=(Owned&& other) noexcept {
    if (this != &other) {
      (void)reset();
      handle_ = std::move(other.handle_);
      release_ = other.release_;
      counter_ = other.counter_;
      held_ = std::exchange(other.held_, false);
    }
    return *this;
  }
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() { (void)reset(); }

  [[nodiscard]] const Handle& get() const { return handle_; }

  // Releases the object now; the release's status (0 when there was nothing to release).
  int reset() {
    if (!held_) return 0;
    held_ = false;
    if (counter_ != nullptr) counter_->fetch_sub(1, std::memory_order_relaxed);
    return release_(handle_);
  }

 private:
  Handle handle_;
  Release release_;
  std::atomic<std::uint64_t>* counter_;
  bool held_;
};

// Where a driver object lives: it is released in its own device's context, whichever device the
// session's dispatcher is on at the time.
struct OnDevice {
  DeviceBinding* binding;
  std::uint32_t device;
  void enter() const { binding->bind(device); }
};

// The releases of the driver objects sessions hold.
struct DestroyStream {
  const cuda::DriverTable* driver;
  OnDevice where;
  int operator()(cuda::CUstream stream) const {
    where.enter();
    return driver->stream_destroy(stream);
  }
};
struct DestroyEvent {
  const cuda::DriverTable* driver;
  OnDevice where;
  int operator()(cuda::CUevent event) const {
    where.enter();
    return driver->event_destroy(event);
  }
};
struct DestroyGraph {
  const cuda::DriverTable* driver;
  OnDevice where;
  int operator()(cuda::CUgraph graph) const {
    where.enter();
    return driver->graph_destroy(graph);
  }
};
struct DestroyGraphExec {
  const cuda::DriverTable* driver;
  OnDevice where;
  int operator()(cuda::CUgraphExec exec) const {
    where.enter();
    return driver->graph_exec_destroy(exec);
  }
};
struct DestroyBlasHandle {
  const cuda::CublasTable* blas;
  OnDevice where;
  int operator()(cuda::cublasHandle_t handle) const {
    where.enter();
    return blas->destroy(handle);
  }
};
// Host registrations are portable (every context's): no device to enter.
struct UnregisterHost {
  const cuda::DriverTable* driver;
  int operator()(void* host) const { return driver->mem_host_unregister(host); }
};

using OwnedStream = Owned<cuda::CUstream, DestroyStream>;
using OwnedEvent = Owned<cuda::CUevent, DestroyEvent>;
using OwnedGraph = Owned<cuda::CUgraph, DestroyGraph>;
using OwnedGraphExec = Owned<cuda::CUgraphExec, DestroyGraphExec>;
using OwnedBlasHandle = Owned<cuda::cublasHandle_t, DestroyBlasHandle>;

}  // namespace gpubroker::broker
