// What a program asks about its kernels and device variables: cudaFuncGetAttributes,
// cudaFuncSetAttribute, cudaFuncSetCacheConfig, the occupancy calculator, and the symbol calls
// (cudaMemcpyToSymbol, cudaMemcpyFromSymbol, cudaGetSymbolAddress, cudaGetSymbolSize).
//
// The broker answers each question about a function once; the shim keeps the answer with the
// function's record until an attribute of it is set (ggml asks the occupancy of the same kernel on
// every flash-attention call). A variable's device address is resolved on first use.
#include <cstring>

#include "gpubroker/cuda/runtime_abi.h"
#include "shim/runtime/registry.h"
#include "shim/runtime/runtime_state.h"
#include "shim/trace/recorder.h"

using namespace gpubroker;
using namespace gpubroker::shim::rt;
namespace cudart = gpubroker::cuda::rt;

namespace {

constexpr Error kErrorInvalidDeviceFunction = 98;
constexpr Error kErrorInvalidSymbol = 13;

Error resolved_function(const void* key, FunctionRecord*& function) {
  function = find_function(key);
  if (function == nullptr) return record(kErrorInvalidDeviceFunction);
  return resolve(*function);
}

Error resolved_variable(const void* symbol, VariableRecord*& variable) {
  {
    Registry& r = registry();
    std::lock_guard guard(r.lock);
    auto it = r.variables.find(symbol);
    variable = it == r.variables.end() ? nullptr : &it->second;
  }
  if (variable == nullptr) return record(kErrorInvalidSymbol);
  return resolve(*variable);
}

// The device address of [offset, offset + bytes) of a variable, after checking the range.
Error symbol_range(const void* symbol, std::size_t bytes, std::size_t offset, void*& address) {
  VariableRecord* variable = nullptr;
  if (const Error e = resolved_variable(symbol, variable); e != kSuccess) return e;
  if (offset > variable->size || bytes > variable->size - offset) return record(kErrorInvalidValue);
  address = reinterpret_cast<void*>(variable_pointer(*variable) + offset);
  return kSuccess;
}

template <wire::RequestKind Kind>
Error set_function(const void* key, int attribute, int value) {
  FunctionRecord* function = nullptr;
  if (const Error e = resolved_function(key, function); e != kSuccess) return e;
  const Error e = call<Kind>(wire::FuncAttributeRequest{function_id(*function), attribute, value});
  std::lock_guard guard(registry().lock);
  function->attributes.reset();
  function->occupancy.clear();
  return e;
}

}  // namespace

extern "C" {

int cudaFuncGetAttributes(cudart::cudaFuncAttributes* out, const void* key) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (out == nullptr) return record(kErrorInvalidValue);
  FunctionRecord* function = nullptr;
  if (const Error e = resolved_function(key, function); e != kSuccess) return e;
  std::optional<wire::FuncAttributesResult> cached;
  {
    std::lock_guard guard(registry().lock);
    cached = function->attributes;
  }
  if (!cached) {
    shim::ReplyOf<wire::RequestKind::kFuncGetAttributes> reply{};
    const Error e = call<wire::RequestKind::kFuncGetAttributes>(wire::FuncAttributeRequest{function_id(*function), 0, 0}, &reply);
    if (e != kSuccess) return e;
    cached = reply;
    std::lock_guard guard(registry().lock);
    function->attributes = cached;
  }
  const std::int32_t* v = cached->values;  // indexed by CUfunction_attribute
  *out = cudart::cudaFuncAttributes{};
  out->maxThreadsPerBlock = v[0];
  out->sharedSizeBytes = static_cast<std::size_t>(v[1]);
  out->constSizeBytes = static_cast<std::size_t>(v[2]);
  out->localSizeBytes = static_cast<std::size_t>(v[3]);
  out->numRegs = v[4];
  out->ptxVersion = v[5];
  out->binaryVersion = v[6];
  out->cacheModeCA = v[7];
  out->maxDynamicSharedSizeBytes = v[8];
  out->preferredShmemCarveout = v[9];
  out->clusterDimMustBeSet = v[10];
  out->requiredClusterWidth = v[11];
  out->requiredClusterHeight = v[12];
  out->requiredClusterDepth = v[13];
  out->nonPortableClusterSizeAllowed = v[14];
  out->clusterSchedulingPolicyPreference = v[15];
  return kSuccess;
}

// cudaFuncAttribute numbers the settable attributes as CUfunction_attribute does.
int cudaFuncSetAttribute(const void* key, int attribute, int value) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (attribute < cudart::cudaFuncAttributeMaxDynamicSharedMemorySize || attribute >= cudart::cudaFuncAttributeMax) {
    return record(kErrorInvalidValue);
  }
  return set_function<wire::RequestKind::kFuncSetAttribute>(key, attribute, value);
}

int cudaFuncSetCacheConfig(const void* key, int config) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return set_function<wire::RequestKind::kFuncSetCacheConfig>(key, 0, config);
}

int cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* blocks, const void* key, int block_size,
                                                           std::size_t dynamic_shared, unsigned flags) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (blocks == nullptr) return record(kErrorInvalidValue);
  FunctionRecord* function = nullptr;
  if (const Error e = resolved_function(key, function); e != kSuccess) return e;
  const auto question = std::make_tuple(block_size, dynamic_shared, flags);
  {
    std::lock_guard guard(registry().lock);
    if (auto it = function->occupancy.find(question); it != function->occupancy.end()) {
      *blocks = it->second;
      return kSuccess;
    }
  }
  shim::ReplyOf<wire::RequestKind::kOccupancy> reply{};
  const Error e = call<wire::RequestKind::kOccupancy>(wire::OccupancyRequest{function_id(*function), block_size, flags, dynamic_shared}, &reply);
  if (e != kSuccess) return e;
  *blocks = reply;
  std::lock_guard guard(registry().lock);
  function->occupancy[question] = *blocks;
  return kSuccess;
}

int cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void* key, int block_size,
                                                  std::size_t dynamic_shared) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(blocks, key, block_size, dynamic_shared, 0);
}

int cudaGetSymbolAddress(void** address, const void* symbol) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (address == nullptr) return record(kErrorInvalidValue);
  return symbol_range(symbol, 0, 0, *address);
}

int cudaGetSymbolSize(std::size_t* size, const void* symbol) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (size == nullptr) return record(kErrorInvalidValue);
  VariableRecord* variable = nullptr;
  if (const Error e = resolved_variable(symbol, variable); e != kSuccess) return e;
  *size = variable->size;
  return kSuccess;
}

int cudaMemcpyAsync(void* destination, const void* source, std::size_t bytes, int kind, void* stream);
int cudaStreamSynchronize(void* stream);

// The symbol is device memory whatever `kind` says of it: only the other side's kind matters
// (cudaMemcpyDefault: device memory if the shim knows it as such, else host memory).
int cudaMemcpyToSymbolAsync(const void* symbol, const void* source, std::size_t bytes, std::size_t offset, int kind,
                            void* stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (kind == kDefault) kind = memory().is_device(source) ? kDeviceToDevice : kHostToDevice;
  if (kind != kHostToDevice && kind != kDeviceToDevice) return record(kErrorInvalidMemcpyDirection);
  void* address = nullptr;
  if (const Error e = symbol_range(symbol, bytes, offset, address); e != kSuccess) return e;
  return cudaMemcpyAsync(address, source, bytes, kind, stream);
}

int cudaMemcpyFromSymbolAsync(void* destination, const void* symbol, std::size_t bytes, std::size_t offset, int kind,
                              void* stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (kind == kDefault) kind = memory().is_device(destination) ? kDeviceToDevice : kDeviceToHost;
  if (kind != kDeviceToHost && kind != kDeviceToDevice) return record(kErrorInvalidMemcpyDirection);
  void* address = nullptr;
  if (const Error e = symbol_range(symbol, bytes, offset, address); e != kSuccess) return e;
  return cudaMemcpyAsync(destination, address, bytes, kind, stream);
}

int cudaMemcpyToSymbol(const void* symbol, const void* source, std::size_t bytes, std::size_t offset, int kind) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  const Error e = cudaMemcpyToSymbolAsync(symbol, source, bytes, offset, kind, nullptr);
  return e != kSuccess ? e : cudaStreamSynchronize(nullptr);
}

int cudaMemcpyFromSymbol(void* destination, const void* symbol, std::size_t bytes, std::size_t offset, int kind) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  const Error e = cudaMemcpyFromSymbolAsync(destination, symbol, bytes, offset, kind, nullptr);
  return e != kSuccess ? e : cudaStreamSynchronize(nullptr);
}

}  // extern "C"
