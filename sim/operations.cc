#include "sim/operations.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "sim/counters.h"
#include "sim/driver_access.h"

namespace gpubroker::sim {

std::uint64_t Event::begin_record() {
  std::lock_guard lock(mutex_);
  return ++state_.recorded;
}

std::uint64_t Event::latest_record() const {
  std::lock_guard lock(mutex_);
  return state_.recorded;
}

void Event::complete(std::uint64_t generation, cuda::CUresult fault) {
  {
    std::lock_guard lock(mutex_);
    if (generation > state_.completed) {
      state_.completed = generation;
      state_.completed_at = std::chrono::steady_clock::now();
      state_.fault = fault;
    }
  }
  completed_changed_.notify_all();
}

void Event::wait(std::uint64_t generation) {
  std::unique_lock lock(mutex_);
  completed_changed_.wait(lock, [&] { return state_.completed >= generation; });
}

Event::State Event::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

namespace {

struct Executor {
  bool faulted;

  cuda::CUresult operator()(const CopyOp& copy) const {
    if (faulted) return cuda::CUDA_SUCCESS;
    for (std::size_t row = 0; row < copy.height; ++row)
      std::memmove(copy.destination + row * copy.destination_pitch, copy.source + row * copy.source_pitch,
                   copy.width);
    Counters& c = counters();
    std::uint64_t bytes = std::uint64_t{copy.width} * copy.height;
    switch (copy.kind) {
      case CopyKind::kHostToDevice: count(c.bytes_host_to_device, bytes); break;
      case CopyKind::kDeviceToHost: count(c.bytes_device_to_host, bytes); break;
      case CopyKind::kDeviceToDevice: count(c.bytes_device_to_device, bytes); break;
      case CopyKind::kHostToHost: count(c.bytes_host_to_host, bytes); break;
    }
    return cuda::CUDA_SUCCESS;
  }

  cuda::CUresult operator()(const MemsetOp& memset) const {
    if (faulted) return cuda::CUDA_SUCCESS;
    if (memset.element_bytes == 1) {
      std::memset(memset.destination, static_cast<int>(memset.value & 0xff), memset.count);
    } else {
      // The element's bytes in memory order (little-endian, as the device's).
      for (std::size_t i = 0; i < memset.count; ++i) {
        std::memcpy(memset.destination + i * memset.element_bytes, &memset.value, memset.element_bytes);
      }
    }
    count(counters().bytes_memset, memset.bytes());
    return cuda::CUDA_SUCCESS;
  }

  cuda::CUresult operator()(const KernelOp& kernel) const {
    if (faulted) return cuda::CUDA_SUCCESS;
    GpubrokerSimLaunch launch{};
    launch.struct_size = sizeof(GpubrokerSimLaunch);
    launch.kernel_name = kernel.kernel->name.c_str();
    launch.grid = kernel.grid;
    launch.block = kernel.block;
    launch.dynamic_shared_bytes = kernel.shared_bytes;
    launch.params = kernel.params.data();
    launch.param_bytes = static_cast<std::uint32_t>(kernel.params.size());
    launch.param_layout = kernel.kernel->layout.data();
    launch.param_count = static_cast<std::uint32_t>(kernel.kernel->layout.size());
    launch.memory_accessible = kernel_memory_accessible;
    set_running_kernel_context(kernel.context);
    int result = kernel.implementation(&launch);
    set_running_kernel_context(nullptr);
    count(counters().kernels_launched);
    return result;
  }

  cuda::CUresult operator()(const HostFuncOp& host) const {
    if (faulted) return cuda::CUDA_SUCCESS;
    host.function(host.user_data);
    count(counters().host_functions_run);
    return cuda::CUDA_SUCCESS;
  }

  cuda::CUresult operator()(const GemmOp& gemm) const {
    if (faulted) return cuda::CUDA_SUCCESS;
    cuda::CUresult result = execute_gemm(gemm);
    if (result == cuda::CUDA_SUCCESS) count(counters().gemms_run);
    return result;
  }

  cuda::CUresult operator()(const TrsmOp& trsm) const {
    if (faulted) return cuda::CUDA_SUCCESS;
    cuda::CUresult result = execute_trsm(trsm);
    if (result == cuda::CUDA_SUCCESS) count(counters().trsms_run);
    return result;
  }

  cuda::CUresult operator()(const VectorOp& vector) const {
    if (faulted) return cuda::CUDA_SUCCESS;
    return execute_vector(vector);
  }

  cuda::CUresult operator()(const LuOp& lu) const {
    if (faulted) return cuda::CUDA_SUCCESS;
    return execute_lu(lu);
  }

  cuda::CUresult operator()(const EventRecordOp& record) const {
    record.event->complete(record.generation);
    return cuda::CUDA_SUCCESS;
  }

  cuda::CUresult operator()(const EventWaitOp& wait) const {
    if (wait.generation != 0) wait.event->wait(wait.generation);
    return cuda::CUDA_SUCCESS;
  }
};

}  // namespace

// No exception leaves: the worker thread runs client-described work (a GEMM whose packed operands
// do not fit in memory, a plugin's kernel that throws), and an exception escaping it would end
// the broker. It faults the stream instead, as a GPU fault would.
cuda::CUresult execute(const Operation& operation, bool faulted) {
  try {
    return std::visit(Executor{faulted}, operation);
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "sim: an operation ran out of host memory (CUDA_ERROR_OUT_OF_MEMORY on its stream)\n");
    return cuda::CUDA_ERROR_OUT_OF_MEMORY;
  } catch (...) {
    fmt::print(stderr, "sim: an operation threw (CUDA_ERROR_UNKNOWN on its stream)\n");
    return cuda::CUDA_ERROR_UNKNOWN;
  }
}

}  // namespace gpubroker::sim
