#include "broker/device_layer.h"

#include <dlfcn.h>
#include <fmt/core.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <type_traits>
#include <vector>

#include "gpubroker/sim/sim_driver.h"

namespace gpubroker::broker {

namespace {

std::string cuda_error_text(const cuda::DriverTable& driver, cuda::CUresult result) {
  const char* name = nullptr;
  if (driver.get_error_name != nullptr) driver.get_error_name(result, &name);
  return fmt::format("{} ({})", name != nullptr ? name : "unknown CUresult", result);
}

}  // namespace

const char* to_string(DriverKind kind) { return kind == DriverKind::kCuda ? "cuda" : "sim"; }

std::string default_sim_library() {
  std::error_code ignored;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ignored);
  const std::filesystem::path directory = self.parent_path();
  for (const auto& candidate : {directory / "../sim/libgpubroker-sim.so",
                                directory / "../lib/gpubroker/libgpubroker-sim.so",
                                directory / "../lib/x86_64-linux-gnu/gpubroker/libgpubroker-sim.so"}) {
    if (std::filesystem::exists(candidate, ignored)) return std::filesystem::weakly_canonical(candidate, ignored).string();
  }
  return "libgpubroker-sim.so";
}

DeviceResult<std::unique_ptr<DeviceLayer>> DeviceLayer::open(DriverChoice choice, const std::string& sim_library,
                                                             const SimSettings& settings) {
  const std::string sim = sim_library.empty() ? default_sim_library() : sim_library;
  if (choice == DriverChoice::kSim) return load(sim, DriverKind::kSim, settings);
  auto real = load("libcuda.so.1", DriverKind::kCuda, settings);
  if (real || choice == DriverChoice::kCuda) return real;
  return load(sim, DriverKind::kSim, settings);
}

std::string default_sim_kernels(const std::string& sim_library) {
  std::error_code ignored;
  const std::filesystem::path directory = std::filesystem::path(sim_library).parent_path();
  for (const auto& candidate : {directory / "libgpubroker-sim-ggml.so", directory / "ggml/libgpubroker-sim-ggml.so"}) {
    if (std::filesystem::exists(candidate, ignored)) return std::filesystem::weakly_canonical(candidate, ignored).string();
  }
  return "";
}

// The sim's own configuration entry points, before cuInit reads its defaults: the settings travel
// as calls, not through the broker's environment (which other threads may read).
DeviceResult<void> DeviceLayer::configure_sim(const SimSettings& sim) {
  if (kind_ != DriverKind::kSim) return boost::outcome_v2::success();
  auto call = [&](const char* symbol, auto argument, const std::string& what) -> DeviceResult<void> {
    using Configure = int (*)(decltype(argument));
    auto configure = reinterpret_cast<Configure>(::dlsym(handle_, symbol));
    if (configure == nullptr) return DeviceError{DeviceErrc::kSymbolMissing, fmt::format("{}: no symbol {}", library_, symbol)};
    if (const int r = configure(argument); r != cuda::CUDA_SUCCESS) {
      return DeviceError{DeviceErrc::kInitFailed, fmt::format("{}: {} refused: {}", library_, what, cuda_error_text(tables_.driver, r))};
    }
    return boost::outcome_v2::success();
  };
  if (sim.devices) {
    static_assert(std::is_same_v<GpubrokerSimConfigureDevicesFn, int (*)(unsigned)>);
    if (auto r = call("gpubroker_sim_configure_devices", *sim.devices, fmt::format("{} devices", *sim.devices)); !r) return r;
  }
  // Unset and not in the environment: the plugins shipped with the sim, so that a sim broker runs
  // llama.cpp out of the box.
  std::optional<std::string> kernels = sim.kernels;
  if (!kernels && std::getenv("GPUBROKER_SIM_KERNELS") == nullptr) kernels = default_sim_kernels(library_);
  if (kernels) {
    static_assert(std::is_same_v<GpubrokerSimConfigureKernelsFn, int (*)(const char*)>);
    if (auto r = call("gpubroker_sim_configure_kernels", kernels->c_str(), "kernel plugins '" + *kernels + "'"); !r) return r;
  }
  if (!sim.discover.empty()) {
    static_assert(std::is_same_v<GpubrokerSimConfigureDiscoveryFn, int (*)(const char*)>);
    if (auto r = call("gpubroker_sim_configure_discovery", sim.discover.c_str(), "discovery record '" + sim.discover + "'"); !r)
      return r;
  }
  return boost::outcome_v2::success();
}

DeviceResult<std::unique_ptr<DeviceLayer>> DeviceLayer::load(const std::string& library, DriverKind kind,
                                                             const SimSettings& sim) {
  auto layer = std::unique_ptr<DeviceLayer>(new DeviceLayer());
  layer->library_ = library;
  layer->kind_ = kind;
  layer->handle_ = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (layer->handle_ == nullptr) {
    const char* why = ::dlerror();
    return DeviceError{DeviceErrc::kLibraryNotFound, fmt::format("{}: {}", library, why != nullptr ? why : "?")};
  }
  cuda::DriverTable& d = layer->tables_.driver;
#define GPUBROKER_RESOLVE(member, symbol, type)                                               \
  d.member = reinterpret_cast<decltype(d.member)>(::dlsym(layer->handle_, #symbol));                       \
  if (d.member == nullptr) {                                                                  \
    return DeviceError{DeviceErrc::kSymbolMissing, fmt::format("{}: no symbol {}", library, #symbol)}; \
  }
  GPUBROKER_DRIVER_API(GPUBROKER_RESOLVE)
#undef GPUBROKER_RESOLVE
  if (auto configured = layer->configure_sim(sim); !configured) return configured.error();
  if (auto enumerated = layer->enumerate(); !enumerated) return enumerated.error();
  layer->load_blas();
  auto shared = std::shared_ptr<ContextGroup>(new ContextGroup(layer->tables_.driver));
  for (std::uint32_t ordinal = 0; ordinal < layer->primary_contexts_.size(); ++ordinal) {
    layer->contexts_.push_back(std::make_unique<DeviceContext>(layer->tables_, ordinal, layer->primary_contexts_[ordinal]));
    shared->contexts_.push_back(layer->contexts_.back().get());
  }
  layer->shared_group_ = std::move(shared);
  layer->modules_ = std::make_unique<ModuleCache>();
  return layer;
}

DeviceResult<void> DeviceLayer::enumerate() {
  const cuda::DriverTable& d = tables_.driver;
  auto fail = [&](DeviceErrc code, const char* call, cuda::CUresult r) {
    return DeviceError{code, fmt::format("{}: {} failed: {}", library_, call, cuda_error_text(d, r))};
  };
  if (cuda::CUresult r = d.init(0); r != cuda::CUDA_SUCCESS) return fail(DeviceErrc::kInitFailed, "cuInit", r);
  int count = 0;
  if (cuda::CUresult r = d.device_get_count(&count); r != cuda::CUDA_SUCCESS) {
    return fail(DeviceErrc::kInitFailed, "cuDeviceGetCount", r);
  }
  if (count <= 0) return DeviceError{DeviceErrc::kNoDevice, library_ + ": no CUDA device"};
  devices_.count = static_cast<std::uint32_t>(std::min<int>(count, wire::kMaxDevices));
  devices_.simulated = kind_ == DriverKind::kSim ? 1 : 0;
  d.driver_get_version(&devices_.driver_version);
  for (std::uint32_t i = 0; i < devices_.count; ++i) {
    wire::DeviceRecord& record = devices_.devices[i];
    cuda::CUdevice device = 0;
    if (cuda::CUresult r = d.device_get(&device, static_cast<int>(i)); r != cuda::CUDA_SUCCESS) {
      return fail(DeviceErrc::kInitFailed, "cuDeviceGet", r);
    }
    record.ordinal = static_cast<std::int32_t>(i);
    d.device_get_name(record.name, sizeof(record.name) - 1, device);
    cuda::CUuuid uuid{};
    d.device_get_uuid(&uuid, device);
    std::memcpy(record.uuid, uuid.bytes, sizeof(record.uuid));
    d.device_get_pci_bus_id(record.pci_bus_id, sizeof(record.pci_bus_id) - 1, device);
    std::size_t total = 0;
    d.device_total_mem(&total, device);
    record.total_bytes = total;
    for (int a = 1; a < static_cast<int>(wire::kDeviceAttributeCount); ++a) {
      int value = 0;
      // Attributes a driver does not know stay 0, like the runtime reports them.
      if (d.device_get_attribute(&value, a, device) == cuda::CUDA_SUCCESS) record.attributes[a] = value;
    }
    cuda::CUcontext context = nullptr;
    if (cuda::CUresult r = d.primary_ctx_retain(&context, device); r != cuda::CUDA_SUCCESS) {
      return fail(DeviceErrc::kContextFailed, "cuDevicePrimaryCtxRetain", r);
    }
    primary_contexts_.push_back(context);
  }
  return boost::outcome_v2::success();
}

namespace {

// The first of `candidates` that exports every symbol of an X-macro list into `table`.
template <class Table, class Resolve>
bool resolve_first(const std::vector<void*>& candidates, Table& table, Resolve&& resolve) {
  for (void* library : candidates) {
    table = Table{};
    if (resolve(library, table)) return true;
  }
  table = Table{};
  return false;
}

std::vector<void*> open_libraries(std::initializer_list<const char*> names) {
  std::vector<void*> opened;
  for (const char* name : names) {
    if (void* h = ::dlopen(name, RTLD_NOW | RTLD_LOCAL)) opened.push_back(h);
  }
  return opened;
}

}  // namespace

void DeviceLayer::load_blas() {
  // The sim serves cuBLAS and cuBLASLt from the same library; a GPU host from NVIDIA's, newest
  // first.
  const bool sim = kind_ == DriverKind::kSim;
  const std::vector<void*> blas = sim ? std::vector<void*>{handle_} : open_libraries({"libcublas.so.13", "libcublas.so.12"});
  tables_.blas_loaded = resolve_first(blas, tables_.blas, [](void* library, cuda::CublasTable& b) {
    bool complete = true;
#define GPUBROKER_RESOLVE(member, symbol, type)                                   \
    b.member = reinterpret_cast<decltype(b.member)>(::dlsym(library, #symbol)); \
    complete = complete && b.member != nullptr;
    GPUBROKER_CUBLAS_API(GPUBROKER_RESOLVE)
    return complete;
  });
  const std::vector<void*> lt =
      sim ? std::vector<void*>{handle_} : open_libraries({"libcublasLt.so.13", "libcublasLt.so.12"});
  tables_.blas_lt_loaded = resolve_first(lt, tables_.blas_lt, [](void* library, cuda::lt::CublasLtTable& b) {
    bool complete = true;
    GPUBROKER_CUBLASLT_API(GPUBROKER_RESOLVE)
#undef GPUBROKER_RESOLVE
    return complete;
  });
}

ContextGroup::~ContextGroup() {
  owned_.clear();  // their pollers and release threads first
  for (cuda::CUcontext context : created_) (void)driver_.ctx_destroy(context);
}

DeviceResult<std::shared_ptr<const ContextGroup>> DeviceLayer::contexts_for(Isolation isolation, uid_t uid) const {
  if (isolation == Isolation::kNone) return shared_group_;
  std::lock_guard guard(groups_lock_);
  if (auto existing = user_groups_.find(uid); existing != user_groups_.end()) {
    existing->second.idle_since_ns = 0;
    return existing->second.group;
  }
  const cuda::DriverTable& d = tables_.driver;
  auto group = std::shared_ptr<ContextGroup>(new ContextGroup(d));
  for (std::uint32_t ordinal = 0; ordinal < devices_.count; ++ordinal) {
    cuda::CUcontext made = nullptr;
    // cuCtxCreate makes the new context current on this thread; popping it leaves the thread as
    // it was, which DeviceContext's per-thread record of the current context relies on.
    if (cuda::CUresult r = d.ctx_create(&made, 0, static_cast<cuda::CUdevice>(ordinal)); r != cuda::CUDA_SUCCESS) {
      return DeviceError{DeviceErrc::kContextFailed,
                         fmt::format("cuCtxCreate on device {} for uid {}: {}", ordinal, uid, cuda_error_text(d, r))};
    }
    group->created_.push_back(made);
    cuda::CUcontext popped = nullptr;
    (void)d.ctx_pop_current(&popped);
    try {
      group->owned_.push_back(std::make_unique<DeviceContext>(tables_, ordinal, made));
    } catch (const std::system_error& e) {  // its completion poller's thread (a process limit)
      return DeviceError{DeviceErrc::kContextFailed,
                         fmt::format("device {} for uid {}: no thread for its completions: {}", ordinal, uid, e.what())};
    }
    group->contexts_.push_back(group->owned_.back().get());
  }
  std::shared_ptr<const ContextGroup> made = std::move(group);
  user_groups_[uid] = UserGroup{made, 0};
  return made;
}

std::size_t DeviceLayer::release_idle_contexts(std::int64_t now_ns, std::int64_t linger_ns) const {
  std::vector<std::shared_ptr<const ContextGroup>> expired;  // destroyed after the lock is let go
  {
    std::lock_guard guard(groups_lock_);
    for (auto it = user_groups_.begin(); it != user_groups_.end();) {
      UserGroup& user = it->second;
      if (user.group.use_count() > 1) {  // a session holds it
        user.idle_since_ns = 0;
      } else if (user.idle_since_ns == 0) {
        user.idle_since_ns = now_ns;
      } else if (now_ns - user.idle_since_ns >= linger_ns) {
        expired.push_back(std::move(user.group));
        it = user_groups_.erase(it);
        continue;
      }
      ++it;
    }
  }
  return expired.size();
}

DeviceLayer::~DeviceLayer() {
  modules_.reset();   // unloaded through their contexts
  user_groups_.clear();
  shared_group_.reset();
  contexts_.clear();  // their pollers' threads use the primary contexts
  for (std::size_t i = 0; i < primary_contexts_.size(); ++i) {
    tables_.driver.primary_ctx_release(static_cast<cuda::CUdevice>(i));
  }
  // The driver library stays loaded: its worker threads may outlive this object at exit.
}

}  // namespace gpubroker::broker
