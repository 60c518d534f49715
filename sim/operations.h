// The work a sim stream executes, and the events that order it.
//
// An Operation is data, not a closure, so that stream capture can record it into a graph, a graph
// exec can have its parameters replaced (cuGraphExecUpdate) and cuGraphLaunch can enqueue copies
// of it. Every pointer in an operation was checked by the API call that built it: device ranges
// against live allocations, at enqueue time (and again at each cuGraphLaunch).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "gpubroker/cuda/driver_api.h"
#include "gpubroker/sim/kernel_plugin.h"
#include "sim/blas.h"

namespace gpubroker::sim {

enum class CopyKind : std::uint8_t { kHostToDevice, kDeviceToHost, kDeviceToDevice, kHostToHost };

// A device range an operation touches, re-checked when a graph replays it.
struct DeviceRange {
  std::uintptr_t begin = 0;
  std::size_t bytes = 0;
};

// 1D and 2D copies: `height` rows of `width` bytes, rows `*_pitch` apart (1D: height 1).
struct CopyOp {
  unsigned char* destination = nullptr;
  const unsigned char* source = nullptr;
  std::size_t width = 0;
  std::size_t height = 1;
  std::size_t destination_pitch = 0;
  std::size_t source_pitch = 0;
  CopyKind kind = CopyKind::kHostToDevice;
  DeviceRange device_ranges[2];
};

// `count` elements of `element_bytes` (1, 2 or 4) set to `value`'s low bytes (cuMemsetD8/16/32).
struct MemsetOp {
  unsigned char* destination = nullptr;
  std::uint32_t value = 0;
  std::size_t count = 0;
  std::uint32_t element_bytes = 1;
  [[nodiscard]] std::size_t bytes() const { return count * element_bytes; }
};

// What a module knows of one kernel; shared by the function handle and every launch of it.
struct KernelRecord {
  std::string name;
  std::vector<GpubrokerSimParam> layout;
  std::uint32_t param_bytes = 0;
};

struct KernelOp {
  std::shared_ptr<const KernelRecord> kernel;
  GpubrokerSimKernel implementation = nullptr;
  GpubrokerSimDim3 grid{};
  GpubrokerSimDim3 block{};
  std::uint32_t shared_bytes = 0;
  std::vector<unsigned char> params;
  bool waits_for_other_streams = false;  // FoundKernel: always on the stream's worker
  const void* context = nullptr;          // the launching context: the memory the kernel reaches
};

struct HostFuncOp {
  cuda::CUhostFn function = nullptr;
  void* user_data = nullptr;
};

// Completion of cuEventRecord calls. Each record is a generation; the event is complete when the
// latest recorded generation has completed. Any thread; a mutex guards the state, and waiters
// sleep on a condition variable that complete() notifies.
class Event {
 public:
  explicit Event(unsigned flags) : flags_(flags) {}

  [[nodiscard]] bool timing_enabled() const { return (flags_ & cuda::CU_EVENT_DISABLE_TIMING) == 0; }

  // A new record, at enqueue time; returns its generation.
  std::uint64_t begin_record();
  // The generation a wait enqueued now must wait for (0: never recorded, nothing to wait for).
  [[nodiscard]] std::uint64_t latest_record() const;
  // Called by the worker that executes the record; `fault` is the recording stream's error (a
  // kernel before the record faulted), which the event then reports as a poisoned CUDA context's
  // events do: cuEventQuery and cuEventSynchronize return it.
  void complete(std::uint64_t generation, cuda::CUresult fault = cuda::CUDA_SUCCESS);
  // Blocks until `generation` has completed.
  void wait(std::uint64_t generation);

  struct State {
    std::uint64_t recorded = 0;
    std::uint64_t completed = 0;
    std::chrono::steady_clock::time_point completed_at{};
    cuda::CUresult fault = cuda::CUDA_SUCCESS;  // of the stream the completed record ran on
  };
  [[nodiscard]] State state() const;

 private:
  const unsigned flags_;
  mutable std::mutex mutex_;
  std::condition_variable completed_changed_;
  State state_;
};

struct EventRecordOp {
  std::shared_ptr<Event> event;
  std::uint64_t generation = 0;  // assigned when enqueued (0 while only recorded in a graph)
};

struct EventWaitOp {
  std::shared_ptr<Event> event;
  std::uint64_t generation = 0;  // assigned when enqueued
};

// GemmOp, TrsmOp, VectorOp and LuOp (sim/blas.h) check their device ranges when they run, not when they are built.
using Operation = std::variant<CopyOp, MemsetOp, KernelOp, HostFuncOp, EventRecordOp, EventWaitOp, GemmOp, TrsmOp, VectorOp, LuOp>;

// Runs one operation on the calling (worker) thread; returns the error it raises, if any. With
// `faulted` (an earlier operation of the stream failed) only event records and waits run, so that
// nothing waiting on the stream's events hangs. Never throws: an operation that runs out of host
// memory (or a kernel implementation that throws) fails with an error instead.
[[nodiscard]] cuda::CUresult execute(const Operation& operation, bool faulted);

}  // namespace gpubroker::sim
