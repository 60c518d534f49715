// What nvcc-generated static constructors call before main(): they only record here. Nothing
// contacts the broker (it may not even be reachable yet); a fatbin travels to the broker on the
// first launch of one of its kernels (issue 5).
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "gpubroker/cuda/runtime_abi.h"
#include "shim/runtime/registry.h"
#include "shim/trace/recorder.h"

namespace rt = gpubroker::cuda::rt;

namespace {

// A kernel<<<grid, block, shared, stream>>> configuration between nvcc's push (before the
// arguments are evaluated) and the stub's pop. A stack per host thread: an argument expression
// may itself launch a kernel.
struct CallConfiguration {
  rt::dim3 grid;
  rt::dim3 block;
  std::size_t shared_bytes;
  void* stream;
};
thread_local std::vector<CallConfiguration> t_configurations;

}  // namespace

namespace gpubroker::shim::rt {
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}
}  // namespace gpubroker::shim::rt

using gpubroker::shim::rt::FatbinRecord;
using gpubroker::shim::rt::FatbinWrapper;
using gpubroker::shim::rt::FunctionRecord;
using gpubroker::shim::rt::Registry;
using gpubroker::shim::rt::VariableRecord;
using gpubroker::shim::rt::registry;

extern "C" {

void** __cudaRegisterFatBinary(void* wrapper) {
  Registry& r = registry();
  std::lock_guard guard(r.lock);
  auto record = std::make_unique<FatbinRecord>();
  record->wrapper = static_cast<const FatbinWrapper*>(wrapper);
  r.fatbins.push_back(std::move(record));
  // The handle the program passes back is the record itself.
  return reinterpret_cast<void**>(r.fatbins.back().get());
}

void __cudaRegisterFatBinaryEnd(void** handle) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  std::lock_guard guard(registry().lock);
  reinterpret_cast<FatbinRecord*>(handle)->ended = true;
}

void __cudaUnregisterFatBinary(void** /*handle*/) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  // The broker reclaims the session's modules when the process ends; nothing to do here.
}

char __cudaInitModule(void** /*handle*/) { GPUBROKER_TRACE_ENTRY(kRuntime); return 1; }

void __cudaRegisterFunction(void** handle, const char* host_stub, char* /*device_fun*/, const char* device_name,
                            int /*thread_limit*/, void* /*tid*/, void* /*bid*/, void* /*block*/, void* /*grid*/,
                            int* /*warp_size*/) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  Registry& r = registry();
  std::lock_guard guard(r.lock);
  FunctionRecord& f = r.functions[host_stub];
  f.fatbin = reinterpret_cast<FatbinRecord*>(handle);
  f.device_name = device_name;
  r.kernel_handles.insert(&f);
}

void __cudaRegisterVar(void** handle, char* host_variable, char* /*device_address*/, const char* device_name,
                       int /*external*/, std::size_t size, int constant, int /*global*/) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  Registry& r = registry();
  std::lock_guard guard(r.lock);
  r.variables[host_variable] = VariableRecord{reinterpret_cast<FatbinRecord*>(handle), device_name, size, constant != 0, {}};
}

unsigned __cudaPushCallConfiguration(rt::dim3 grid, rt::dim3 block, std::size_t shared_bytes, void* stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  t_configurations.push_back(CallConfiguration{grid, block, shared_bytes, stream});
  return 0;  // nonzero would make the launch stub skip the kernel
}

int __cudaPopCallConfiguration(rt::dim3* grid, rt::dim3* block, std::size_t* shared_bytes, void* stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (t_configurations.empty()) return rt::cudaErrorMissingConfiguration;
  const CallConfiguration c = t_configurations.back();
  t_configurations.pop_back();
  *grid = c.grid;
  *block = c.block;
  *shared_bytes = c.shared_bytes;
  *static_cast<void**>(stream) = c.stream;
  return 0;
}

}  // extern "C"
