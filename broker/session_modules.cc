#include "broker/session_modules.h"

#include <algorithm>
#include <cstring>

#include "broker/session.h"
#include "fatbin/fatbin.h"
#include "ipc/log.h"

namespace gpubroker::broker {

namespace {

using cuda::CUDA_ERROR_INVALID_HANDLE;
using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_SUCCESS;
using CUresult = cuda::CUresult;

const char* as_name(const std::vector<std::byte>& bytes) { return reinterpret_cast<const char*>(bytes.data()); }

}  // namespace

SessionModules::SessionModules(DeviceSession& session) : session_(session) {}

bool SessionModules::owns_global(std::uint64_t pointer, std::uint64_t bytes) const {
  return inside_one(globals_, pointer, bytes);
}

std::uint64_t SessionModules::serial_of(std::uint64_t pointer, std::uint64_t bytes) const {
  const Global* global = entry_holding(globals_, pointer, bytes);
  return global != nullptr ? global->serial : 0;
}

std::optional<std::uint32_t> SessionModules::device_of(std::uint64_t pointer) const {
  auto it = globals_.upper_bound(pointer);
  if (it == globals_.begin()) return std::nullopt;
  --it;
  if (pointer - it->first >= it->second.bytes) return std::nullopt;
  return modules_.at(it->second.module).get()->context->ordinal();
}

int SessionModules::KeepModule::operator()(const std::shared_ptr<const ModuleCache::Module>&) const {
  session->uncount_host_bytes(image_bytes);
  return 0;
}

ipc::Result<SessionModules::Received> SessionModules::receive_all(CallContext& call) {
  const std::uint64_t staged = call.header().staged_bytes;
  if (staged > kMaxStagedObjectBytes) return request_violation();
  Received received;
  received.refused = !session_.may_hold_host(staged);
  if (!received.refused) session_.count_host_bytes(staged);
  auto moved = call.session.receive_staged(staged, [&](std::span<const std::byte> piece) {
    if (!received.refused) received.bytes.insert(received.bytes.end(), piece.begin(), piece.end());
  });
  if (!received.refused) session_.uncount_host_bytes(staged);
  if (!moved) return pipe_violation(moved.error());
  if (received.refused) {
    ipc::log(ipc::LogLevel::kWarning, "session {}: {} staged bytes refused: the session holds {} of the {} bytes of "
             "broker host memory it may (--session-host-memory-limit)", call.session.id(), staged,
             session_.host_bytes(), session_.limits().host_memory_bytes);
  }
  return received;
}

Lookup<const SessionModules::Function*> SessionModules::function_for(std::uint64_t id) const {
  auto it = functions_.find(id);
  if (it == functions_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  return &it->second;
}

Outcome<wire::NoReply> SessionModules::load(CallContext& call, const wire::HandleRequest& request) {
  auto received = receive_all(call);
  if (!received) return received.error();
  if (received.value().refused) return CallError{cuda::CUDA_ERROR_OUT_OF_MEMORY};
  std::vector<std::byte>& image = received.value().bytes;
  if (modules_.contains(request.handle)) return CallError{CUDA_ERROR_INVALID_VALUE};
  // The driver reads an image without being told its length. So the broker's own parser first
  // proves that the image is whole and well-formed within the bytes received (a malformed one
  // never reaches the driver), and PTX text gets its terminator.
  const std::uint32_t device = session_.current_device();  // loaded on the current device
  const wire::DeviceRecord& d = session_.device().devices().devices[device];
  const auto arch = static_cast<std::uint32_t>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR] * 10 +
                                               d.attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR]);
  auto parsed = fatbin::parse_module(image, arch);
  if (!parsed) {
    ipc::log(ipc::LogLevel::kWarning, "session {}: module image refused: {}", call.session.id(),
             fatbin::describe(parsed.error()));
    return CallError{parsed.error().code == fatbin::FatbinErrc::kNoCompatibleImage ? cuda::CUDA_ERROR_NO_BINARY_FOR_GPU
                                                                                    : cuda::CUDA_ERROR_INVALID_IMAGE};
  }
  image.push_back(std::byte{0});
  std::shared_ptr<const ModuleCache::Module> module;
  const CUresult r = session_.device().modules().load(session_.context(device), image,
                                                      !parsed.value().has_writable_globals,
                                                      std::move(parsed.value().kernels), module);
  if (r != CUDA_SUCCESS) return CallError{r};
  // Counted from here: the cache keeps the image's bytes (for a shared image, each holder counts it).
  session_.count_host_bytes(image.size());
  modules_.emplace(request.handle, HeldModule(std::move(module), KeepModule{&session_, image.size()},
                                              &session_.counters().modules));
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionModules::get_function(CallContext& call, const wire::FunctionRequest& f) {
  auto received_name = receive_all(call);
  if (!received_name) return received_name.error();
  if (received_name.value().refused) return CallError{cuda::CUDA_ERROR_OUT_OF_MEMORY};
  std::vector<std::byte>& name = received_name.value().bytes;
  name.push_back(std::byte{0});
  auto module = modules_.find(f.module);
  if (module == modules_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  if (functions_.contains(f.function)) return CallError{CUDA_ERROR_INVALID_VALUE};
  cuda::CUfunction function = nullptr;
  const ModuleCache::Module& held = *module->second.get();
  CUresult r = held.context->module_get_function(&function, held.handle, as_name(name));
  if (r == CUDA_SUCCESS) r = check_layout(call.session, held, as_name(name), function);
  if (r != CUDA_SUCCESS) return CallError{r};
  // The name is kept for the report of a failed launch, which carries no more than this.
  const std::string_view full(as_name(name));
  functions_[f.function] =
      Function{function, f.module, held.context, std::string(full.substr(0, sizeof(wire::SessionErrorReport::kernel) - 1))};
  return wire::NoReply{};
}

Outcome<wire::GlobalResult> SessionModules::get_global(CallContext& call, const wire::HandleRequest& request) {
  auto received_name = receive_all(call);
  if (!received_name) return received_name.error();
  if (received_name.value().refused) return CallError{cuda::CUDA_ERROR_OUT_OF_MEMORY};
  std::vector<std::byte>& name = received_name.value().bytes;
  name.push_back(std::byte{0});
  auto module = modules_.find(request.handle);
  if (module == modules_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  const ModuleCache::Module& held = *module->second.get();
  cuda::CUdeviceptr pointer = 0;
  std::size_t bytes = 0;
  const CUresult r = held.context->module_get_global(&pointer, &bytes, held.handle, as_name(name));
  if (r != CUDA_SUCCESS) return CallError{r};
  globals_[pointer] = Global{bytes, request.handle, session_.new_memory_serial()};
  return wire::GlobalResult{pointer, bytes};
}

Outcome<wire::NoReply> SessionModules::unload(CallContext&, const wire::HandleRequest& request) {
  auto it = modules_.find(request.handle);
  if (it == modules_.end()) return CallError{CUDA_ERROR_INVALID_HANDLE};
  // The driver unloads it when its last session lets go.
  std::erase_if(functions_, [&](const auto& entry) { return entry.second.module == it->first; });
  std::erase_if(globals_, [&](const auto& entry) { return entry.second.module == it->first; });
  modules_.erase(it);
  session_.memory_released();
  return wire::NoReply{};
}

Outcome<wire::NoReply> SessionModules::launch(CallContext& call, const wire::LaunchPayload& payload) {
  return launch_with(call, payload.head, payload.bytes);
}

Outcome<wire::NoReply> SessionModules::launch_staged(CallContext& call, const wire::LaunchRequest& request) {
  auto received_params = receive_all(call);
  if (!received_params) return received_params.error();
  if (received_params.value().refused) return CallError{cuda::CUDA_ERROR_OUT_OF_MEMORY};
  std::vector<std::byte>& params = received_params.value().bytes;
  return launch_with(call, request, params);
}

Outcome<wire::NoReply> SessionModules::launch_with(CallContext& call, const wire::LaunchRequest& launch,
                                                   std::span<const std::byte> params) {
  if (launch.param_bytes != params.size()) return CallError{CUDA_ERROR_INVALID_VALUE};
  auto function = function_for(launch.function);
  if (!function) return function.error();
  auto stream = session_.streams().stream_for(launch.stream);
  if (!stream) return stream.error();
  // CUDA refuses a launch onto a stream of another device than the current one, and a function
  // is of the device its module was loaded on.
  const DeviceContext& context = *stream.value().context;
  if (&context != &session_.current_context() || function.value()->context != &context) {
    return CallError{CUDA_ERROR_INVALID_HANDLE};
  }
  std::size_t size = params.size();
  void* buffer = const_cast<std::byte*>(params.data());
  void* extra[] = {cuda::CU_LAUNCH_PARAM_BUFFER_POINTER, buffer, cuda::CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
                   cuda::CU_LAUNCH_PARAM_END};
  const Function& f = *function.value();
  auto work = session_.timeline().begin(call, stream.value(), launch.stream);
  const CUresult r = launch.flags == 0
                         ? context.launch_kernel(f.handle, launch.grid[0], launch.grid[1], launch.grid[2],
                                                 launch.block[0], launch.block[1], launch.block[2],
                                                 launch.shared_bytes, stream.value().handle, nullptr, extra)
                         : launch_with_attributes(context, launch, f.handle, stream.value().handle, extra);
  work.finish_kernel(r, launch.function, f.name, launch.grid, launch.block);
  session_.note_sticky(call.session, r, &f.name);
  return answer(r);
}

// Clients pack parameters by the layout the project's fatbin parser reads; where the driver can
// tell (cuFuncGetParamInfo, CUDA 12.4+), the two must agree, or every launch of the kernel would
// hand it misplaced bytes. A disagreement refuses the function and says why.
cuda::CUresult SessionModules::check_layout(const ipc::ServerSession& session, const ModuleCache::Module& module,
                                            const char* name, cuda::CUfunction function) const {
  const auto kernel = std::ranges::find(module.kernels, std::string_view(name), &fatbin::KernelInfo::name);
  if (kernel == module.kernels.end()) return CUDA_SUCCESS;  // the driver found it; the parser did not look
  std::size_t index = 0;
  for (;; ++index) {
    std::size_t offset = 0, size = 0;
    if (module.context->func_get_param_info(function, index, &offset, &size) != CUDA_SUCCESS) break;
    if (index >= kernel->params.size() || kernel->params[index].offset != offset || kernel->params[index].size != size) {
      ipc::log(ipc::LogLevel::kError, "session {}: kernel {}: parameter {} is at {} ({} bytes) for the driver, not "
               "where the fatbin parser put it", session.id(), name, index, offset, size);
      return cuda::CUDA_ERROR_INVALID_IMAGE;
    }
  }
  if (index != kernel->params.size()) {
    ipc::log(ipc::LogLevel::kError, "session {}: kernel {}: the driver knows {} parameters, the fatbin parser {}",
             session.id(), name, index, kernel->params.size());
    return cuda::CUDA_ERROR_INVALID_IMAGE;
  }
  return CUDA_SUCCESS;
}

// A launch with attributes (wire::LaunchFlags) goes through cuLaunchKernelEx.
cuda::CUresult SessionModules::launch_with_attributes(const DeviceContext& context, const wire::LaunchRequest& launch,
                                                      cuda::CUfunction function, cuda::CUstream stream, void** extra) {
  if ((launch.flags & ~(wire::kLaunchCooperative | wire::kLaunchProgrammaticSerialization)) != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  cuda::CUlaunchAttribute attributes[2] = {};
  unsigned count = 0;
  if ((launch.flags & wire::kLaunchCooperative) != 0) {
    attributes[count].id = cuda::CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
    attributes[count++].value.cooperative = 1;
  }
  if ((launch.flags & wire::kLaunchProgrammaticSerialization) != 0) {
    attributes[count].id = cuda::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attributes[count++].value.programmaticStreamSerializationAllowed = 1;
  }
  const cuda::CUlaunchConfig config{launch.grid[0], launch.grid[1], launch.grid[2], launch.block[0], launch.block[1],
                                    launch.block[2], launch.shared_bytes, stream, attributes, count};
  return context.launch_kernel_ex(&config, function, nullptr, extra);
}

Outcome<wire::FuncAttributesResult> SessionModules::get_attributes(CallContext&, const wire::FuncAttributeRequest& a) {
  auto function = function_for(a.function);
  if (!function) return function.error();
  // Attributes a driver does not know (newer than it) read as 0, as the runtime reports them.
  wire::FuncAttributesResult result{};
  for (int i = 0; i < static_cast<int>(std::size(result.values)); ++i) {
    if (function.value()->context->func_get_attribute(&result.values[i], static_cast<cuda::CUfunction_attribute>(i),
                                                      function.value()->handle) != CUDA_SUCCESS) {
      result.values[i] = 0;
    }
  }
  return result;
}

Outcome<wire::NoReply> SessionModules::set_attribute(CallContext&, const wire::FuncAttributeRequest& a) {
  auto function = function_for(a.function);
  if (!function) return function.error();
  const Function& f = *function.value();
  // A shared module's functions are every holder's: the dynamic shared memory limit, which
  // decides whether their launches are valid, is only ever raised for them.
  constexpr auto kMaxDynamicShared = cuda::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
  const auto attribute = static_cast<cuda::CUfunction_attribute>(a.attribute);
  int current = 0;
  if (attribute == kMaxDynamicShared && modules_.at(f.module).get()->shared &&
      f.context->func_get_attribute(&current, attribute, f.handle) == CUDA_SUCCESS && a.value <= current) {
    return wire::NoReply{};
  }
  return answer(f.context->func_set_attribute(f.handle, attribute, a.value));
}

Outcome<wire::NoReply> SessionModules::set_cache_config(CallContext&, const wire::FuncAttributeRequest& a) {
  auto function = function_for(a.function);
  if (!function) return function.error();
  const Function& f = *function.value();
  return answer(f.context->func_set_cache_config(f.handle, static_cast<cuda::CUfunc_cache>(a.value)));
}

Outcome<std::int32_t> SessionModules::occupancy(CallContext&, const wire::OccupancyRequest& o) {
  auto function = function_for(o.function);
  if (!function) return function.error();
  int blocks = 0;
  const Function& f = *function.value();
  const CUresult r = f.context->occupancy_max_active_blocks(&blocks, f.handle, o.block_size, o.dynamic_shared_bytes,
                                                           o.flags);
  return answer(r, static_cast<std::int32_t>(blocks));
}

}  // namespace gpubroker::broker
