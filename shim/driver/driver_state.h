// What the driver shim's entry points share: contexts (contexts.cc), the way a call reaches the
// broker, and how a result is reported.
//
// A CUDA context is the broker's per-device context seen from the process: every context of a
// device, primary or created, is the same device in the same session (the broker keeps one
// context per user and device; DESIGN.md). What a context of the driver API adds is which device
// the calling thread works on: making a context current sets the thread's current device, which
// the runtime shim shares (cudaSetDevice makes the device's primary context current, as CUDA's
// does). Streams, events, memory and graphs are the process's objects (shim/client/operations.h),
// used by either API.
//
// Not modelled: a context destroyed with its memory. The memory of a destroyed context stays the
// session's until freed or the process ends (the broker reclaims it then).
#pragma once

#include <cstdint>

#include "gpubroker/cuda/driver_api.h"
#include "shim/abi/unsupported.h"
#include "shim/client/connection.h"
#include "shim/client/operations.h"
#include "shim/trace/recorder.h"

namespace gpubroker::shim::drv {

using cuda::CUresult;

inline constexpr CUresult kSuccess = cuda::CUDA_SUCCESS;
inline constexpr CUresult kInvalidValue = cuda::CUDA_ERROR_INVALID_VALUE;
inline constexpr CUresult kOutOfMemory = cuda::CUDA_ERROR_OUT_OF_MEMORY;
inline constexpr CUresult kNotInitialized = cuda::CUDA_ERROR_NOT_INITIALIZED;
inline constexpr CUresult kInvalidDevice = cuda::CUDA_ERROR_INVALID_DEVICE;
inline constexpr CUresult kInvalidContext = cuda::CUDA_ERROR_INVALID_CONTEXT;
inline constexpr CUresult kInvalidHandle = cuda::CUDA_ERROR_INVALID_HANDLE;
inline constexpr CUresult kInvalidImage = cuda::CUDA_ERROR_INVALID_IMAGE;
inline constexpr CUresult kNotFound = cuda::CUDA_ERROR_NOT_FOUND;
inline constexpr CUresult kNotReady = cuda::CUDA_ERROR_NOT_READY;
inline constexpr CUresult kNotSupported = cuda::CUDA_ERROR_NOT_SUPPORTED;
inline constexpr CUresult kDeviceUnavailable = 46;  // CUDA_ERROR_DEVICE_UNAVAILABLE: the broker is gone

// The result an entry point returns: noted for the call trace; an error that poisons a context
// becomes the process's sticky error (said once on stderr), as the runtime shim does.
CUresult result(CUresult status);

// Says once on stderr that `what` is not served by the driver shim (it returns CUDA_ERROR_NOT_SUPPORTED).
inline void log_unsupported(const char* what) { gpubroker_log_unsupported_in(what, "CUDA driver", "CUDA_ERROR_NOT_SUPPORTED"); }

// The visible device `device`'s record, or nullptr.
const wire::DeviceRecord* device_record(int device);

// Makes `device` the calling thread's current device until destroyed, then the one before: for a
// call on an object's own device (a module's, a context's).
class OnDevice {
 public:
  explicit OnDevice(int device) : previous_(Connection::current_device()) { Connection::set_current_device(device); }
  OnDevice(const OnDevice&) = delete;
  OnDevice& operator=(const OnDevice&) = delete;
  ~OnDevice() { Connection::set_current_device(previous_); }

 private:
  int previous_;
};

// ---- contexts (contexts.cc) ------------------------------------------------------------------

struct Context;

// The calling thread's current context: the top of its context stack, or, when the thread has
// none and the runtime shim is in use, the primary context of the runtime's current device (the
// runtime makes it current on its first call). nullptr when there is none.
Context* current_context();
// The device of a context (a visible index).
int context_device(const Context* context);
// The connection a call of the calling thread goes through: CUDA_ERROR_NOT_INITIALIZED without a
// broker, CUDA_ERROR_INVALID_CONTEXT without a current context. Sets the thread's current device
// to the context's.
CUresult enter(Connection*& c);

// The wire id of a stream that work is about to be submitted to (or waited for), once the host
// functions enqueued on it before have returned: the handles are the ids (0, CU_STREAM_LEGACY = 1
// and CU_STREAM_PER_THREAD = 2 name the session's default stream).
inline std::uint64_t stream_id(cuda::CUstream stream) { return shim::submission_stream_id(stream); }

}  // namespace gpubroker::shim::drv

// Entry points one file of the driver shim calls from another.
extern "C" {
gpubroker::cuda::CUresult cuDevicePrimaryCtxRetain(gpubroker::cuda::CUcontext* context, int device);
gpubroker::cuda::CUresult cuDevicePrimaryCtxRelease_v2(int device);
}

// At the top of a driver entry point: records the call when tracing (with what result() notes).
#define GPUBROKER_DRIVER_ENTRY() GPUBROKER_TRACE_ENTRY(kDriver)
