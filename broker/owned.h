// A driver object a session holds. The owner releases it, and counts it out of the broker's
// totals, when it is destroyed; so a session's table of owners is reclaimed by destroying it, and
// nothing a client created can outlive its session.
//
//   std::unordered_map<std::uint64_t, Owned<cuda::CUstream, DestroyStream>> streams;
//   streams.emplace(id, Owned(stream, DestroyStream{&context}, &counters.streams));
//   streams.erase(id);  // cuStreamDestroy, and one stream fewer in the totals
//
// Move-only. Used on the session's dispatcher thread only (and by its destructor).
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

#include "broker/device_context.h"

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

// The releases of the driver objects sessions hold: each in the context the object was made in,
// whichever context the releasing thread had current.
struct DestroyStream {
  const DeviceContext* context;
  int operator()(cuda::CUstream stream) const { return context->stream_destroy(stream); }
};
struct DestroyEvent {
  const DeviceContext* context;
  int operator()(cuda::CUevent event) const { return context->event_destroy(event); }
};
struct DestroyGraph {
  const DeviceContext* context;
  int operator()(cuda::CUgraph graph) const { return context->graph_destroy(graph); }
};
struct DestroyGraphExec {
  const DeviceContext* context;
  int operator()(cuda::CUgraphExec exec) const { return context->graph_exec_destroy(exec); }
};
struct DestroyBlasHandle {
  const BlasCalls* blas;
  int operator()(cuda::cublasHandle_t handle) const { return blas->destroy(handle); }
};
struct DestroyLtHandle {
  const BlasLtCalls* lt;
  int operator()(cuda::lt::cublasLtHandle_t handle) const { return lt->destroy(handle); }
};
// Device memory the broker holds for itself (never the client's to name or free); freed on the
// context's release thread, so that no session waits for another's work (device_releases.h).
struct FreeBrokerMemory {
  const DeviceContext* context;
  std::uint64_t bytes;
  int operator()(cuda::CUdeviceptr pointer) const {
    (void)context->releases().free_later(pointer, bytes);
    return 0;
  }
};
// Host registrations are portable (every context's): any context unregisters them.
struct UnregisterHost {
  const DeviceContext* context;
  int operator()(void* host) const { return context->mem_host_unregister(host); }
};

using OwnedStream = Owned<cuda::CUstream, DestroyStream>;
using OwnedEvent = Owned<cuda::CUevent, DestroyEvent>;
using OwnedGraph = Owned<cuda::CUgraph, DestroyGraph>;
using OwnedGraphExec = Owned<cuda::CUgraphExec, DestroyGraphExec>;
using OwnedBlasHandle = Owned<cuda::cublasHandle_t, DestroyBlasHandle>;
using OwnedBrokerMemory = Owned<cuda::CUdeviceptr, FreeBrokerMemory>;
using OwnedLtHandle = Owned<cuda::lt::cublasLtHandle_t, DestroyLtHandle>;

}  // namespace gpubroker::broker
