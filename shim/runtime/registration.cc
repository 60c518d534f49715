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

// __fatBinC_Wrapper_t: what __cudaRegisterFatBinary receives.
struct FatbinWrapper {
  int magic;  // 0x466243B1
  int version;
  const unsigned long long* data;
  void* filename_or_fatbins;
};

struct FatbinRecord {
  const FatbinWrapper* wrapper;
  bool ended = false;
};

struct FunctionRecord {
  FatbinRecord* fatbin;
  std::string device_name;
};

struct VariableRecord {
  FatbinRecord* fatbin;
  std::string device_name;
  std::size_t size;
  bool constant;
};

// Process-wide and never destroyed: __cudaUnregisterFatBinary runs from atexit handlers, after
// static destructors may have run.
struct Registry {
  std::mutex lock;
  std::vector<std::unique_ptr<FatbinRecord>> fatbins;
  std::unordered_map<const void*, FunctionRecord> functions;  // by host stub
  std::unordered_map<const void*, VariableRecord> variables;  // by host shadow
};

Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

}  // namespace

extern "C" {

void** __cudaRegisterFatBinary(void* wrapper) {
  Registry& r = registry();
  std::lock_guard guard(r.lock);
  r.fatbins.push_back(std::make_unique<FatbinRecord>(FatbinRecord{static_cast<const FatbinWrapper*>(wrapper)}));
  // The handle the program passes back is the record itself.
  return reinterpret_cast<void**>(r.fatbins.back().get());
}

void __cudaRegisterFatBinaryEnd(void** handle) {
  std::lock_guard guard(registry().lock);
  reinterpret_cast<FatbinRecord*>(handle)->ended = true;
}

void __cudaUnregisterFatBinary(void** /*handle*/) {
  // The broker reclaims the session's modules when the process ends; nothing to do here.
}

char __cudaInitModule(void** /*handle*/) { return 1; }

void __cudaRegisterFunction(void** handle, const char* host_stub, char* /*device_fun*/, const char* device_name,
                            int /*thread_limit*/, void* /*tid*/, void* /*bid*/, void* /*block*/, void* /*grid*/,
                            int* /*warp_size*/) {
  Registry& r = registry();
  std::lock_guard guard(r.lock);
  r.functions[host_stub] = FunctionRecord{reinterpret_cast<FatbinRecord*>(handle), device_name};
}

void __cudaRegisterVar(void** handle, char* host_variable, char* /*device_address*/, const char* device_name,
                       int /*external*/, std::size_t size, int constant, int /*global*/) {
  Registry& r = registry();
  std::lock_guard guard(r.lock);
  r.variables[host_variable] = VariableRecord{reinterpret_cast<FatbinRecord*>(handle), device_name, size, constant != 0};
}

unsigned __cudaPushCallConfiguration(rt::dim3 grid, rt::dim3 block, std::size_t shared_bytes, void* stream) {
  t_configurations.push_back(CallConfiguration{grid, block, shared_bytes, stream});
  return 0;  // nonzero would make the launch stub skip the kernel
}

int __cudaPopCallConfiguration(rt::dim3* grid, rt::dim3* block, std::size_t* shared_bytes, void* stream) {
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
