#include "broker/device_context.h"

#include "broker/completion_poller.h"

namespace gpubroker::broker {

DeviceContext::DeviceContext(const DriverTables& tables, std::uint32_t ordinal, cuda::CUcontext handle)
    : table_(tables.driver), ordinal_(ordinal), handle_(handle) {
  if (tables.blas_loaded) blas_.emplace(*this, tables.blas);
  if (tables.blas_lt_loaded) blas_lt_.emplace(*this, tables.blas_lt);
  completions_ = std::make_unique<CompletionPoller>(*this);
  releases_ = std::make_unique<DeferredFrees>(*this);
}

DeviceContext::~DeviceContext() = default;

void DeviceContext::make_current() const {
  // Left as it was when the driver refuses: the call that follows fails in the driver, and the
  // next one tries again.
  if (table_.ctx_set_current(handle_) == cuda::CUDA_SUCCESS) current_on_thread_ = handle_;
}

}  // namespace gpubroker::broker
