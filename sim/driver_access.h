// What the sim's cuBLAS (sim/cublas.cc, sim/blas.cc) needs of the driver's state, which lives in
// sim/driver.cc. Any thread; each call takes and releases the driver's mutex, so none may be
// called with it held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "gpubroker/cuda/driver_api.h"
#include "sim/stream.h"

namespace gpubroker::sim {

// Whether cuInit has succeeded.
[[nodiscard]] bool driver_initialized();

// Whether the calling thread has a current context (cuCtxSetCurrent).
[[nodiscard]] bool context_current();

// The stream a handle names: NULL, CU_STREAM_LEGACY and CU_STREAM_PER_THREAD name the current
// context's NULL stream. CUDA_ERROR_INVALID_CONTEXT without a current context for those,
// CUDA_ERROR_INVALID_HANDLE for an unknown handle.
[[nodiscard]] cuda::CUresult find_stream(cuda::CUstream handle, std::shared_ptr<Stream>* stream);

// Whether [begin, begin + bytes) lies inside one cuMemAlloc block, or inside contiguous VMM
// mappings with read (and, with `write`, write) access. An empty range is valid.
[[nodiscard]] bool device_range_valid(std::uintptr_t begin, std::size_t bytes, bool write);

// GpubrokerSimLaunch::memory_accessible: device_range_valid's ranges, or a range inside one
// cuMemHostRegister'ed host range (mapped pinned memory, which a kernel may touch). 1 or 0. A
// cuMemAlloc block only where it belongs to the context of the kernel the calling thread runs.
int kernel_memory_accessible(const void* address, std::uint64_t bytes, int write);

// The calling thread runs a kernel of `context` (a Context*, nullptr once done): what
// kernel_memory_accessible lets it reach.
void set_running_kernel_context(const void* context);

}  // namespace gpubroker::sim
