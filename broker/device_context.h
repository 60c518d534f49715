// One CUDA context on one device, as the broker's sessions use it: the only way the rest of the
// broker reaches the driver, cuBLAS and cuBLASLt (only broker/device* calls their tables).
//
// Every driver call that runs in a context (GPUBROKER_DRIVER_CONTEXT_API) is a member of the same
// name and arguments, which makes this context current on the calling thread first, when it is
// not already:
//
//   const DeviceContext& context = layer.context(1);
//   CUdeviceptr pointer = 0;
//   context.mem_alloc(&pointer, bytes);         // on device 1, whichever context was current
//   context.blas()->gemm_ex(handle, ...);       // cuBLAS, with device 1's context current
//
// So no caller can run a call in the wrong context by forgetting to bind one: an object made in a
// context remembers the DeviceContext, and every later call on it, its release included, goes
// through that DeviceContext. Which context a thread has current is kept per thread here, so a
// session whose calls stay on one device binds once, and a thread that turns to another device
// (another session's destructor, the completion poller) binds as it goes.
//
// Made by the device layer at start-up and never destroyed before the sessions are; any thread
// may call it (the driver is thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "broker/completion_poller.h"
#include "broker/device_releases.h"
#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/cublaslt_abi.h"
#include "gpubroker/cuda/driver_api.h"

namespace gpubroker::broker {

class DeviceContext;

// The libraries one driver came with: the driver's table, and cuBLAS and cuBLASLt where usable.
struct DriverTables {
  cuda::DriverTable driver{};
  cuda::CublasTable blas{};
  bool blas_loaded = false;
  cuda::lt::CublasLtTable blas_lt{};
  bool blas_lt_loaded = false;
};

// A table's calls made with a context current: Calls<CublasTable>::gemm_ex(...) is cuBLAS's
// gemm_ex in that context.
#define GPUBROKER_IN_CONTEXT(member, symbol, type) \
  template <class... Args>                         \
  auto member(Args... args) const {                \
    enter();                                       \
    return table_.member(args...);                 \
  }

class BlasCalls {
 public:
  BlasCalls(const DeviceContext& context, const cuda::CublasTable& table) : context_(context), table_(table) {}
  GPUBROKER_CUBLAS_API(GPUBROKER_IN_CONTEXT)

 private:
  void enter() const;
  const DeviceContext& context_;
  const cuda::CublasTable& table_;
};

class BlasLtCalls {
 public:
  BlasLtCalls(const DeviceContext& context, const cuda::lt::CublasLtTable& table) : context_(context), table_(table) {}
  GPUBROKER_CUBLASLT_API(GPUBROKER_IN_CONTEXT)

 private:
  void enter() const;
  const DeviceContext& context_;
  const cuda::lt::CublasLtTable& table_;
};

class DeviceContext {
 public:
  // `handle` is a context of device `ordinal` (broker ordinal) that outlives this object.
  DeviceContext(const DriverTables& tables, std::uint32_t ordinal, cuda::CUcontext handle);
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;
  ~DeviceContext();  // stops its completion poller

  [[nodiscard]] std::uint32_t ordinal() const { return ordinal_; }
  [[nodiscard]] cuda::CUcontext handle() const { return handle_; }

  // Completes the requests that wait for this context's work (completion_poller.h).
  [[nodiscard]] CompletionPoller& completions() const { return *completions_; }

  // Frees the device memory sessions let go of, without making them wait (device_releases.h).
  [[nodiscard]] DeferredFrees& releases() const { return *releases_; }

  // cuBLAS and cuBLASLt in this context; nullptr where no such library is usable (cuBLAS requests
  // then fail with NOT_INITIALIZED, cuBLASLt matmuls with NOT_SUPPORTED).
  [[nodiscard]] const BlasCalls* blas() const { return blas_ ? &*blas_ : nullptr; }
  [[nodiscard]] const BlasLtCalls* blas_lt() const { return blas_lt_ ? &*blas_lt_ : nullptr; }

  // Makes this context current on the calling thread, unless it is already.
  void enter() const {
    if (current_on_thread_ != handle_) make_current();
  }

  GPUBROKER_DRIVER_CONTEXT_API(GPUBROKER_IN_CONTEXT)

 private:
  void make_current() const;

  // The context this thread made current through a DeviceContext. Nothing else in the broker
  // makes a context current on a session's or the poller's thread (the device layer does so only
  // on the main thread, before any session), so it is the thread's current context.
  static inline constinit thread_local cuda::CUcontext current_on_thread_ = nullptr;

  const cuda::DriverTable& table_;
  std::uint32_t ordinal_;
  cuda::CUcontext handle_;
  std::optional<BlasCalls> blas_;
  std::optional<BlasLtCalls> blas_lt_;
  std::unique_ptr<CompletionPoller> completions_;
  std::unique_ptr<DeferredFrees> releases_;  // destroyed first: its last frees use the poller's context
};

#undef GPUBROKER_IN_CONTEXT

inline void BlasCalls::enter() const { context_.enter(); }
inline void BlasLtCalls::enter() const { context_.enter(); }

}  // namespace gpubroker::broker
