// Kernel launches: cudaLaunchKernel (the stubs of nvcc before 12.8, with __NV_LEGACY_LAUNCH, and
// any program), __cudaGetKernel and __cudaLaunchKernel (the stubs of nvcc 12.8+ and 13: both
// libraries export them), cudaLaunchKernelExC and cudaLaunchCooperativeKernel. A launch is one
// asynchronous ring message carrying the function id, the configuration and the packed parameter
// block; a block too large for the slot goes through staging. The first launch of a kernel resolves it (registry.h).
#include <cstring>
#include <vector>

#include "gpubroker/cuda/runtime_abi.h"
#include "shim/abi/unsupported.h"
#include "shim/runtime/registry.h"
#include "shim/runtime/runtime_state.h"
#include "shim/trace/recorder.h"

using namespace gpubroker;
using namespace gpubroker::shim::rt;
using gpubroker::shim::Connection;
namespace cudart = gpubroker::cuda::rt;

namespace {

constexpr Error kErrorInvalidDeviceFunction = 98;
constexpr Error kErrorInvalidKernelImage = 200;


// The bytes of a registered fatbin: its container, whose header gives its length.
std::span<const std::byte> fatbin_bytes(const FatbinWrapper& wrapper) {
  const auto* data = reinterpret_cast<const std::byte*>(wrapper.data);
  std::uint32_t magic = 0;
  std::uint64_t fat_size = 0;
  std::memcpy(&magic, data, sizeof(magic));
  if (magic != fatbin::kContainerMagic) return {};
  std::memcpy(&fat_size, data + 8, sizeof(fat_size));
  return {data, fatbin::kContainerHeaderSize + fat_size};
}

// The device's architecture as the fatbin parser numbers it (90 for compute capability 9.0).
std::uint32_t device_arch(Connection& c) {
  const wire::DeviceRecord& d = c.device(static_cast<std::uint32_t>(current_device()));
  return static_cast<std::uint32_t>(d.attributes[75] * 10 + d.attributes[76]);
}

// Ships the fatbin to the broker, once per connection and device (the calling thread's current
// one, `device`, which the request names), and learns its kernels' layouts once.
Error load_module(Connection& c, FatbinRecord& fatbin, std::uint32_t device) {
  if (fatbin.modules.find(c, device) != 0) return kSuccess;
  const auto image = fatbin_bytes(*fatbin.wrapper);
  if (image.empty()) return record(kErrorInvalidKernelImage);
  if (fatbin.kernels.empty()) {
    auto module = fatbin::parse_module(image, device_arch(c));
    if (!module) return record(module.error().code == fatbin::FatbinErrc::kNoCompatibleImage ? 209 : kErrorInvalidKernelImage);
    fatbin.kernels = std::move(module.value().kernels);
  }
  const std::uint64_t id = shim::new_object_id();
  if (const Error e = call<wire::RequestKind::kModuleLoad>(wire::HandleRequest{id}, image); e != kSuccess) {
    return e;
  }
  fatbin.modules.set(c, device, id);
  return kSuccess;
}

}  // namespace

namespace gpubroker::shim::rt {

Error resolve(FunctionRecord& function) {
  Connection* c = connection();
  if (c == nullptr || c->visible().empty()) return record(kErrorNoDevice);
  const std::uint32_t device = c->current_ordinal();
  if (function.functions.find(*c, device) != 0) return kSuccess;
  std::lock_guard guard(registry().lock);
  if (function.functions.find(*c, device) != 0) return kSuccess;
  if (const Error e = load_module(*c, *function.fatbin, device); e != kSuccess) return e;
  const fatbin::KernelInfo* layout = nullptr;
  for (const fatbin::KernelInfo& kernel : function.fatbin->kernels) {
    if (kernel.name == function.device_name) layout = &kernel;
  }
  if (layout == nullptr) return record(kErrorInvalidDeviceFunction);
  const std::uint64_t id = shim::new_object_id();
  const std::span<const std::byte> name(reinterpret_cast<const std::byte*>(function.device_name.data()),
                                        function.device_name.size());
  if (const Error e = call<wire::RequestKind::kModuleGetFunction>(
          wire::FunctionRequest{function.fatbin->modules.find(*c, device), id}, name);
      e != kSuccess) {
    return e;
  }
  function.layout = layout;
  function.functions.set(*c, device, id);
  return kSuccess;
}

std::uint64_t function_id(const FunctionRecord& function) {
  Connection* c = connection();
  return c == nullptr ? 0 : function.functions.find(*c, c->current_ordinal());
}

Error resolve(VariableRecord& variable) {
  Connection* c = connection();
  if (c == nullptr || c->visible().empty()) return record(kErrorNoDevice);
  const std::uint32_t device = c->current_ordinal();
  std::lock_guard guard(registry().lock);
  if (variable.pointers.find(*c, device) != 0) return kSuccess;
  if (const Error e = load_module(*c, *variable.fatbin, device); e != kSuccess) return e;
  const std::span<const std::byte> name(reinterpret_cast<const std::byte*>(variable.device_name.data()),
                                        variable.device_name.size());
  auto reply = shim::call<wire::RequestKind::kModuleGetGlobal>(
      c->session(), wire::HandleRequest{variable.fatbin->modules.find(*c, device)}, name);
  if (!reply) return record(kErrorDevicesUnavailable);
  if (reply.value().status != kSuccess) return record(reply.value().status);
  variable.pointers.set(*c, device, reply.value().reply.pointer);
  return kSuccess;
}

std::uint64_t variable_pointer(const VariableRecord& variable) {
  Connection* c = connection();
  return c == nullptr ? 0 : variable.pointers.find(*c, c->current_ordinal());
}

FunctionRecord* find_function(const void* key) {
  Registry& r = registry();
  std::lock_guard guard(r.lock);
  if (auto it = r.functions.find(key); it != r.functions.end()) return &it->second;
  if (r.kernel_handles.count(key) != 0) return static_cast<FunctionRecord*>(const_cast<void*>(key));
  return nullptr;
}

}  // namespace gpubroker::shim::rt

namespace {

Error launch(FunctionRecord* function, cudart::dim3 grid, cudart::dim3 block, void** args, std::size_t shared_bytes,
             void* stream, std::uint8_t flags = 0) {
  if (function == nullptr) return record(kErrorInvalidDeviceFunction);
  if (const Error e = resolve(*function); e != kSuccess) return e;
  const fatbin::KernelInfo& layout = *function->layout;
  if (!layout.params.empty() && args == nullptr) return record(kErrorInvalidValue);
  if (shared_bytes >= (1u << 24)) return record(kErrorInvalidValue);  // beyond any GPU's shared memory
  hold_for_host_funcs(reinterpret_cast<std::uint64_t>(stream));
  wire::LaunchRequest header{function_id(*function),
                             {grid.x, grid.y, grid.z},
                             {block.x, block.y, block.z},
                             static_cast<std::uint32_t>(shared_bytes),
                             flags,
                             layout.param_bytes,
                             reinterpret_cast<std::uint64_t>(stream)};
  // Packed exactly as the device reads it: each argument at its offset, padding zeroed.
  std::byte inline_params[wire::kInlineParamBytes] = {};
  std::vector<std::byte> large;
  std::byte* params = inline_params;
  if (layout.param_bytes > wire::kInlineParamBytes) {
    large.resize(layout.param_bytes);
    params = large.data();
  }
  for (std::size_t i = 0; i < layout.params.size(); ++i) {
    std::memcpy(params + layout.params[i].offset, args[i], layout.params[i].size);
  }
  return record(shim::ops::launch(*connection(), header, std::span<const std::byte>(params, layout.param_bytes)));
}

// cudaLaunchKernelExC's attributes as launch flags. What changes only scheduling and has no
// flag (priority, a hint) is accepted; what the broker cannot carry is refused, by name, once.
Error launch_flags(const cudart::cudaLaunchConfig_t& config, std::uint8_t& flags) {
  if (config.numAttrs != 0 && config.attrs == nullptr) return record(kErrorInvalidValue);
  flags = 0;
  for (unsigned i = 0; i < config.numAttrs; ++i) {
    if (!shim::ops::add_launch_attribute(config.attrs[i].id, config.attrs[i].val.cooperative, flags)) {
      gpubroker_log_unsupported_once("cudaLaunchKernelExC with a launch attribute other than cooperative, "
                                     "programmatic stream serialization or priority");
      return record(kErrorNotSupported);
    }
  }
  return kSuccess;
}

}  // namespace

extern "C" {

int cudaLaunchKernelExC(const cudart::cudaLaunchConfig_t* config, const void* function, void** args) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (config == nullptr) return record(kErrorInvalidValue);
  std::uint8_t flags = 0;
  if (const Error e = launch_flags(*config, flags); e != kSuccess) return e;
  return launch(find_function(function), config->gridDim, config->blockDim, args, config->dynamicSmemBytes,
                config->stream, flags);
}

int cudaLaunchCooperativeKernel(const void* function, cudart::dim3 grid, cudart::dim3 block, void** args,
                                std::size_t shared_bytes, void* stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return launch(find_function(function), grid, block, args, shared_bytes, stream, wire::kLaunchCooperative);
}

int cudaLaunchKernel(const void* function, cudart::dim3 grid, cudart::dim3 block, void** args, std::size_t shared_bytes,
                     void* stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return launch(find_function(function), grid, block, args, shared_bytes, stream);
}

int __cudaGetKernel(void** kernel, const void* host_stub) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  if (kernel == nullptr) return record(kErrorInvalidValue);
  FunctionRecord* function = find_function(host_stub);
  if (function == nullptr) return record(kErrorInvalidDeviceFunction);
  *kernel = function;  // a cudaKernel_t is the record itself, which cudaLaunchKernel also accepts
  return kSuccess;
}

int __cudaLaunchKernel(void* kernel, cudart::dim3 grid, cudart::dim3 block, void** args, std::size_t shared_bytes,
                       void* stream) {
  GPUBROKER_TRACE_ENTRY(kRuntime);
  return launch(find_function(kernel), grid, block, args, shared_bytes, stream);
}

}  // extern "C"
