// libgpubroker-sim.so: the CUDA driver API subset of gpubroker/cuda/driver_api.h, in host memory.
//
// Every exported function is extern "C" with exactly the type the X-macro list gives it (checked
// at the end of this file), so that the broker can resolve it with dlsym as it resolves
// libcuda.so.1. Semantics follow the driver API documentation; where the sim simplifies, the
// comment at that function says how.
//
// Model:
// - One primary context per device, created by cuInit and never destroyed: releasing the last
//   reference keeps its objects (the real driver would destroy them). cuCtxCreate adds contexts of
//   a device; cuCtxDestroy retires one (its objects must have been released: the sim frees none of
//   them). The current context is per thread (cuCtxSetCurrent, with cuCtxCreate/cuCtxPopCurrent's
//   stack below it); calls that need one fail with CUDA_ERROR_INVALID_CONTEXT.
//   Streams, events and modules belong to the context current when they were made, and the sim
//   keeps the rules a GPU keeps between contexts where a caller could break them unnoticed: an
//   event is recorded only on a stream of its own context, and a kernel is launched only from
//   the current context's modules onto its streams (else CUDA_ERROR_INVALID_HANDLE). Waits,
//   queries and copies work across contexts, as on a GPU with unified addressing. A kernel,
//   though, reaches only its own context's device memory (and every context's VMM mappings and
//   registered host memory): a GPU gives each context its own page tables, and a kernel pointed at
//   another context's allocation faults (memory_accessible refuses it, and the launch fails 700).
// - Device memory is host memory: a CUdeviceptr is the host address (mmap, MAP_NORESERVE, so a
//   large allocation commits nothing until touched), page aligned. Free memory per device is the
//   configured total less cuMemAlloc blocks, module globals and live VMM physical allocations.
// - Streams execute in order on a worker thread each (sim/stream.h). The NULL stream
//   (0, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD) is one real stream per context, with no implicit
//   synchronization with other streams (the legacy stream's barrier semantics are not modelled).
// - Handles of streams, events, graphs, execs, modules and functions are ids that are never
//   reused, checked against live tables: a stale or made-up handle is CUDA_ERROR_INVALID_HANDLE.
// - cuMemFree, cuMemUnmap and cuModuleUnload first wait for every stream's queued work (as the
//   real cuMemFree synchronizes), so that no queued copy touches memory that is gone.
//
// Threads: any function from any thread. One mutex (Driver::mutex) guards the tables; it is never
// held while waiting for a stream or an event.
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "gpubroker/cuda/driver_api.h"
#include "gpubroker/sim/kernel_plugin.h"
#include "gpubroker/sim/sim_driver.h"
#include "sim/counters.h"
#include "sim/device_profile.h"
#include "sim/driver_access.h"
#include "sim/error_text.h"
#include "sim/kernel_discovery.h"
#include "sim/kernel_registry.h"
#include "sim/module_image.h"
#include "sim/operations.h"
#include "sim/stream.h"

#define GPUBROKER_SIM_API __attribute__((visibility("default")))

using namespace gpubroker::cuda;  // NOLINT: the exported signatures use the driver's names

namespace gpubroker::sim {
namespace {

constexpr CUresult kIllegalState = 401;  // CUDA_ERROR_ILLEGAL_STATE (not in driver_api.h)
constexpr std::size_t kPageBytes = 4096;
constexpr int kGreatestStreamPriority = -5;  // H100: priorities -5 (highest) .. 0
constexpr unsigned kEventFlagsKnown = CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | 0x4;
constexpr unsigned kEventInterprocess = 0x4;
constexpr unsigned kHostRegisterFlagsKnown = 0x1 | 0x2 | 0x4 | 0x8;
constexpr int kFuncAttributeEnd = 16;  // CU_FUNC_ATTRIBUTE_MAX in CUDA 13.0
constexpr int kFuncCachePreferEqual = 3;

std::size_t round_up(std::size_t value, std::size_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// ---- Objects ---------------------------------------------------------------------------------

struct Context {
  int device = 0;
  bool destroyed = false;              // by cuCtxDestroy; guarded by Driver::mutex
  int retains = 0;                     // guarded by Driver::mutex
  std::shared_ptr<Stream> null_stream;  // set by cuInit
  // cuCtxGetLimit/cuCtxSetLimit, an H100's defaults; guarded by Driver::mutex.
  std::size_t limits[CU_LIMIT_MAX] = {1024, 1 << 20, 8 << 20, 2, 2048, 64, 0};
};

struct Device {
  int ordinal = 0;
  std::size_t total_bytes = 0;
  std::size_t used_bytes = 0;  // guarded by Driver::mutex
  Context context;
};

// A cuMemAlloc block or a module's global variable.
struct Allocation {
  std::size_t bytes = 0;         // as requested
  std::size_t mapped_bytes = 0;  // page-rounded, what mmap returned and what is accounted
  int device = 0;
  bool module_owned = false;          // cuMemFree refuses these
  const Context* context = nullptr;  // whose kernels may reach it
};

// A cuMemCreate allocation: a memfd, mapped at reserved addresses by cuMemMap.
struct Physical {
  int fd = -1;
  std::size_t bytes = 0;
  int device = 0;
  int mappings = 0;
  bool released = false;
};

struct Mapping {
  std::size_t bytes = 0;
  std::shared_ptr<Physical> physical;
  int access = CU_MEM_ACCESS_FLAGS_PROT_NONE;
};

struct StreamEntry {
  std::shared_ptr<Stream> stream;
  Context* context = nullptr;
};

struct GlobalEntry {
  CUdeviceptr pointer = 0;
  std::size_t bytes = 0;
};

struct Module {
  std::vector<std::uint64_t> functions;  // ids
  std::map<std::string, GlobalEntry, std::less<>> globals;
};

struct Function {
  std::shared_ptr<const KernelRecord> kernel;
  std::uint64_t module = 0;
  std::array<int, kFuncAttributeEnd> attributes{};
  int cache_config = 0;
  Context* context = nullptr;  // the module's
};

struct EventEntry {
  std::shared_ptr<Event> event;
  Context* context = nullptr;
};

// Handle ids: 16 * id + tag, never 0, 1 or 2 (the special stream handles), never reused.
enum class Tag : std::uintptr_t { kStream = 1, kEvent, kGraph, kExec, kModule, kFunction, kNode };

// A graph node's id: its graph's id and its index there (a graph's nodes never change).
constexpr unsigned kNodeIndexBits = 24;
std::uint64_t node_id(std::uint64_t graph, std::size_t index) { return graph << kNodeIndexBits | index; }

template <class Handle>
Handle make_handle(std::uint64_t id, Tag tag) {
  return reinterpret_cast<Handle>(static_cast<std::uintptr_t>(id) * 16 + static_cast<std::uintptr_t>(tag));
}
template <class Handle>
std::uint64_t handle_id(Handle handle, Tag tag) {
  auto value = reinterpret_cast<std::uintptr_t>(handle);
  if (value % 16 != static_cast<std::uintptr_t>(tag)) return 0;
  return value / 16;
}

struct Driver {
  std::once_flag init_once;
  CUresult init_result = CUDA_SUCCESS;
  // gpubroker_sim_configure_devices: the device count the first cuInit makes, if set before it
  // (else GPUBROKER_SIM_DEVICES). Guarded by init_once's ordering: written before cuInit only.
  std::atomic<int> configured_devices{-1};
  // gpubroker_sim_configure_kernels and _discovery: in place of GPUBROKER_SIM_KERNELS and
  // GPUBROKER_SIM_DISCOVER when set. Written before cuInit only, under `mutex`.
  std::optional<std::string> configured_plugins;
  std::optional<std::string> configured_discovery;
  std::atomic<bool> initialized{false};  // release by cuInit, acquire by every entry point
  std::vector<std::unique_ptr<Device>> devices;

  std::mutex mutex;
  std::uint64_t next_id = 1;
  std::map<std::uintptr_t, Allocation> allocations;
  std::map<std::uintptr_t, std::size_t> reservations;
  std::map<std::uintptr_t, Mapping> mappings;
  std::unordered_map<std::uint64_t, std::shared_ptr<Physical>> physical;
  std::map<std::uintptr_t, std::size_t> host_registrations;
  std::unordered_map<std::uint64_t, StreamEntry> streams;
  // Destroyed streams whose queued work still runs (as on a GPU): a context-wide wait, and so a
  // cuMemFree, waits for them too. Each expires when its worker has drained it.
  std::vector<std::weak_ptr<Stream>> retired_streams;
  std::unordered_map<std::uint64_t, EventEntry> events;
  std::unordered_map<std::uint64_t, std::shared_ptr<Graph>> graphs;
  std::unordered_map<std::uint64_t, std::shared_ptr<Graph>> execs;
  std::unordered_map<std::uint64_t, Module> modules;
  std::unordered_map<std::uint64_t, Function> functions;
  // cuCtxCreate's contexts, live and destroyed (kept: objects and streams may still name them).
  std::vector<std::unique_ptr<Context>> created_contexts;
};

Driver& driver() {
  static auto* instance = new Driver;  // never destroyed: detached workers outlive static dtors
  return *instance;
}

thread_local Context* current_context = nullptr;
// The contexts below the current one on this thread's stack (cuCtxCreate pushes, cuCtxPopCurrent
// pops; cuCtxSetCurrent replaces the top).
thread_local std::vector<Context*> contexts_below;
// The context of the kernel this thread is running (operations.cc sets it around a launch).
thread_local const void* running_kernel_context = nullptr;

// Every live context: the primary ones and cuCtxCreate's. Caller holds mutex.
template <class Visit>
void for_each_context_locked(Visit&& visit) {
  for (const auto& device : driver().devices) visit(device->context);
  for (const auto& created : driver().created_contexts) {
    if (!created->destroyed) visit(*created);
  }
}

Context* find_context_locked(CUcontext handle) {
  Context* found = nullptr;
  for_each_context_locked([&](Context& context) {
    if (reinterpret_cast<CUcontext>(&context) == handle) found = &context;
  });
  return found;
}

template <class Body>
CUresult guarded(Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return CUDA_ERROR_OUT_OF_MEMORY;
  } catch (const std::system_error&) {  // a worker thread could not be started
    return CUDA_ERROR_OUT_OF_MEMORY;
  } catch (...) {
    return CUDA_ERROR_UNKNOWN;
  }
}

bool initialized() { return driver().initialized.load(std::memory_order_acquire); }

Device* find_device(CUdevice device) {
  Driver& d = driver();
  if (device < 0 || device >= static_cast<int>(d.devices.size())) return nullptr;
  return d.devices[static_cast<std::size_t>(device)].get();
}

std::size_t env_size(const char* name, std::size_t fallback, std::size_t max) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  std::size_t value = 0;
  auto [end, error] = std::from_chars(text, text + std::strlen(text), value);
  if (error != std::errc{} || *end != '\0' || value > max) {
    fmt::print(stderr, "sim: ignoring {}='{}' (not a number up to {})\n", name, text, max);
    return fallback;
  }
  return value;
}

CUresult initialize() {
  Driver& d = driver();
  const int configured = d.configured_devices.load(std::memory_order_acquire);
  const std::size_t count =
      configured >= 0 ? static_cast<std::size_t>(configured) : env_size("GPUBROKER_SIM_DEVICES", 1, kMaxDevices);
  const std::size_t memory = env_size("GPUBROKER_SIM_MEMORY_BYTES", kDefaultMemoryBytes, std::size_t{1} << 50);
  if (count == 0) return CUDA_ERROR_NO_DEVICE;
  std::optional<std::string> plugins;
  std::optional<std::string> discovery;
  {
    std::lock_guard lock(d.mutex);
    plugins = d.configured_plugins;
    discovery = d.configured_discovery;
  }
  if (const char* text = std::getenv("GPUBROKER_SIM_KERNELS"); !plugins && text != nullptr) plugins = text;
  if (const char* text = std::getenv("GPUBROKER_SIM_DISCOVER"); !discovery && text != nullptr) discovery = text;
  // Discovery asked for and impossible fails cuInit: a run that records nothing would say nothing.
  if (discovery && !discovery->empty() && !start_discovery(*discovery)) return CUDA_ERROR_INVALID_VALUE;
  for (std::size_t i = 0; i < count; ++i) {
    auto device = std::make_unique<Device>();
    device->ordinal = static_cast<int>(i);
    device->total_bytes = memory;
    device->context.device = static_cast<int>(i);
    device->context.null_stream = Stream::start(CU_STREAM_DEFAULT, 0);
    d.devices.push_back(std::move(device));
  }
  if (plugins) load_plugins(*plugins);
  if (const char* path = std::getenv("GPUBROKER_SIM_COUNTERS"); path != nullptr && *path != '\0')
    write_counters_at_exit(path);
  return CUDA_SUCCESS;
}

// Which stream a handle names, and its context. Caller holds no lock.
CUresult resolve_stream(CUstream handle, std::shared_ptr<Stream>* stream, Context** context = nullptr) {
  const auto value = reinterpret_cast<std::uintptr_t>(handle);
  if (value <= 2) {  // NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD
    if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    *stream = current_context->null_stream;
    if (context != nullptr) *context = current_context;
    return CUDA_SUCCESS;
  }
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  auto found = d.streams.find(handle_id(handle, Tag::kStream));
  if (found == d.streams.end()) return CUDA_ERROR_INVALID_HANDLE;
  *stream = found->second.stream;
  if (context != nullptr) *context = found->second.context;
  return CUDA_SUCCESS;
}

// The event a handle names (nullptr if none) and its context.
std::shared_ptr<Event> find_event(CUevent handle, Context** context = nullptr) {
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  auto found = d.events.find(handle_id(handle, Tag::kEvent));
  if (found == d.events.end()) return nullptr;
  if (context != nullptr) *context = found->second.context;
  return found->second.event;
}

// Whether [begin, begin + bytes) lies inside one cuMemAlloc block, or inside VMM mappings that
// are contiguous and accessible (readable; writable too with `write`). Caller holds the mutex.
// `kernel_context`: the range is for a kernel of that context, which reaches no allocation of
// another (nullptr: any context's, as copies may).
bool device_range_valid_locked(std::uintptr_t begin, std::size_t bytes, bool write,
                               const void* kernel_context = nullptr) {
  Driver& d = driver();
  if (begin == 0 || bytes == 0) return bytes == 0;
  if (begin + bytes < begin) return false;
  const std::uintptr_t end = begin + bytes;
  if (auto after = d.allocations.upper_bound(begin); after != d.allocations.begin()) {
    const auto& [base, allocation] = *std::prev(after);
    if (begin >= base && end <= base + allocation.bytes) {
      return kernel_context == nullptr || allocation.context == kernel_context;
    }
  }
  std::uintptr_t position = begin;
  while (position < end) {
    auto after = d.mappings.upper_bound(position);
    if (after == d.mappings.begin()) return false;
    const auto& [base, mapping] = *std::prev(after);
    if (position >= base + mapping.bytes) return false;
    const int needed = write ? CU_MEM_ACCESS_FLAGS_PROT_READWRITE : CU_MEM_ACCESS_FLAGS_PROT_READ;
    if ((mapping.access & needed) != needed) return false;
    position = base + mapping.bytes;
  }
  return true;
}

// Waits for the work queued so far on every stream of every context (cuMemFree and friends).
void wait_for_all_streams() {
  Driver& d = driver();
  std::vector<std::shared_ptr<Stream>> all;
  {
    std::lock_guard lock(d.mutex);
    for_each_context_locked([&](const Context& context) { all.push_back(context.null_stream); });
    for (const auto& [id, entry] : d.streams) all.push_back(entry.stream);
    std::erase_if(d.retired_streams, [&](const std::weak_ptr<Stream>& retired) {
      auto stream = retired.lock();
      if (stream) all.push_back(std::move(stream));
      return !stream;
    });
  }
  for (const auto& stream : all) (void)stream->wait_idle();
}

// Accounts `bytes` of device memory on `device`; false when it does not fit. Caller holds mutex.
bool reserve_device_memory_locked(Device& device, std::size_t bytes) {
  if (bytes > device.total_bytes - device.used_bytes) return false;
  device.used_bytes += bytes;
  count(counters().live_allocations);
  count(counters().live_allocation_bytes, bytes);
  return true;
}

void release_device_memory_locked(int device, std::size_t bytes) {
  driver().devices[static_cast<std::size_t>(device)]->used_bytes -= bytes;
  uncount(counters().live_allocations);
  uncount(counters().live_allocation_bytes, bytes);
}

// A cuMemAlloc block or module global: anonymous, uncommitted until touched. Caller holds mutex.
CUresult allocate_locked(Device& device, std::size_t bytes, bool module_owned, CUdeviceptr* pointer) {
  const std::size_t mapped = round_up(bytes, kPageBytes);
  if (!reserve_device_memory_locked(device, mapped)) return CUDA_ERROR_OUT_OF_MEMORY;
  void* memory = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED) {
    release_device_memory_locked(device.ordinal, mapped);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  const auto base = reinterpret_cast<std::uintptr_t>(memory);
  driver().allocations[base] = Allocation{bytes, mapped, device.ordinal, module_owned, current_context};
  *pointer = base;
  return CUDA_SUCCESS;
}

void free_locked(std::map<std::uintptr_t, Allocation>::iterator found) {
  munmap(reinterpret_cast<void*>(found->first), found->second.mapped_bytes);
  release_device_memory_locked(found->second.device, found->second.mapped_bytes);
  driver().allocations.erase(found);
}

void destroy_physical_locked(Physical& physical) {
  close(physical.fd);
  physical.fd = -1;
  release_device_memory_locked(physical.device, physical.bytes);
}

// Queues a copy after checking its device ranges.
CUresult submit_copy(CopyOp copy, CUstream stream_handle) {
  std::shared_ptr<Stream> stream;
  if (CUresult result = resolve_stream(stream_handle, &stream); result != CUDA_SUCCESS) return result;
  if (copy.width == 0 || copy.height == 0) return CUDA_SUCCESS;
  return stream->submit(Operation{std::move(copy)});
}

// A copy's device ranges, filled from the two ends; checks them.
CUresult check_copy(CopyOp& copy, bool source_is_device, bool destination_is_device) {
  if (copy.width == 0 || copy.height == 0) return CUDA_SUCCESS;
  if (copy.source == nullptr || copy.destination == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const std::size_t source_span = (copy.height - 1) * copy.source_pitch + copy.width;
  const std::size_t destination_span = (copy.height - 1) * copy.destination_pitch + copy.width;
  std::lock_guard lock(driver().mutex);
  int ranges = 0;
  if (source_is_device) {
    copy.device_ranges[ranges++] = {reinterpret_cast<std::uintptr_t>(copy.source), source_span};
    if (!device_range_valid_locked(reinterpret_cast<std::uintptr_t>(copy.source), source_span, false))
      return CUDA_ERROR_INVALID_VALUE;
  }
  if (destination_is_device) {
    copy.device_ranges[ranges++] = {reinterpret_cast<std::uintptr_t>(copy.destination), destination_span};
    if (!device_range_valid_locked(reinterpret_cast<std::uintptr_t>(copy.destination), destination_span, true))
      return CUDA_ERROR_INVALID_VALUE;
  }
  return CUDA_SUCCESS;
}

CUresult copy_1d(void* destination, const void* source, std::size_t bytes, CopyKind kind, CUstream stream) {
  CopyOp copy;
  copy.destination = static_cast<unsigned char*>(destination);
  copy.source = static_cast<const unsigned char*>(source);
  copy.width = bytes;
  copy.destination_pitch = copy.source_pitch = bytes;
  copy.kind = kind;
  const bool from_device = kind == CopyKind::kDeviceToHost || kind == CopyKind::kDeviceToDevice;
  const bool to_device = kind == CopyKind::kHostToDevice || kind == CopyKind::kDeviceToDevice;
  if (CUresult result = check_copy(copy, from_device, to_device); result != CUDA_SUCCESS) return result;
  return submit_copy(std::move(copy), stream);
}

// Re-checks the device ranges of a graph's nodes before a replay. Caller holds the mutex.
bool graph_ranges_valid_locked(const Graph& graph) {
  for (const Operation& node : graph.nodes) {
    if (const auto* copy = std::get_if<CopyOp>(&node)) {
      for (const DeviceRange& range : copy->device_ranges)
        if (range.bytes != 0 && !device_range_valid_locked(range.begin, range.bytes, false)) return false;
    } else if (const auto* memset = std::get_if<MemsetOp>(&node)) {
      if (!device_range_valid_locked(reinterpret_cast<std::uintptr_t>(memset->destination), memset->bytes(), true))
        return false;
    }
  }
  return true;
}

std::array<int, kFuncAttributeEnd> default_function_attributes() {
  std::array<int, kFuncAttributeEnd> values{};
  values[CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK] = kMaxThreadsPerBlock;
  values[CU_FUNC_ATTRIBUTE_NUM_REGS] = 32;
  values[CU_FUNC_ATTRIBUTE_PTX_VERSION] = 90;
  values[CU_FUNC_ATTRIBUTE_BINARY_VERSION] = 90;
  values[CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES] = kSharedPerBlock;
  values[CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT] = -1;
  return values;
}

// Packs a launch's parameters from kernelParams or from extra's buffer.
CUresult pack_parameters(const KernelRecord& kernel, void** params, void** extra, std::vector<unsigned char>& packed) {
  packed.assign(kernel.param_bytes, 0);
  if (params != nullptr && extra != nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (extra != nullptr) {
    const void* buffer = nullptr;
    const std::size_t* buffer_size = nullptr;
    for (int i = 0; extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
      if (i >= 64) return CUDA_ERROR_INVALID_VALUE;
      if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) buffer = extra[i + 1];
      else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE) buffer_size = static_cast<const std::size_t*>(extra[i + 1]);
      else return CUDA_ERROR_INVALID_VALUE;
    }
    if (buffer == nullptr || buffer_size == nullptr || *buffer_size != kernel.param_bytes)
      return CUDA_ERROR_INVALID_VALUE;
    if (kernel.param_bytes != 0) std::memcpy(packed.data(), buffer, kernel.param_bytes);
    return CUDA_SUCCESS;
  }
  if (kernel.layout.empty()) return CUDA_SUCCESS;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (std::size_t i = 0; i < kernel.layout.size(); ++i) {
    const GpubrokerSimParam& param = kernel.layout[i];
    if (params[i] == nullptr || std::uint64_t{param.offset} + param.size > packed.size())
      return CUDA_ERROR_INVALID_VALUE;
    std::memcpy(packed.data() + param.offset, params[i], param.size);
  }
  return CUDA_SUCCESS;
}

bool launch_dimensions_valid(const GpubrokerSimDim3& grid, const GpubrokerSimDim3& block) {
  const unsigned grid_dims[3] = {grid.x, grid.y, grid.z};
  const unsigned block_dims[3] = {block.x, block.y, block.z};
  for (int i = 0; i < 3; ++i) {
    if (grid_dims[i] == 0 || grid_dims[i] > kMaxGridDim[i]) return false;
    if (block_dims[i] == 0 || block_dims[i] > kMaxBlockDim[i]) return false;
  }
  return std::uint64_t{block.x} * block.y * block.z <= kMaxThreadsPerBlock;
}

void copy_truncated(const std::string& text, char* out, int length) {
  const std::size_t n = std::min(text.size(), static_cast<std::size_t>(length - 1));
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

// cuLaunchKernel and cuLaunchKernelEx: checks the launch and queues it on its stream.
CUresult launch_kernel(CUfunction function, GpubrokerSimDim3 grid, GpubrokerSimDim3 block, unsigned shared_bytes,
                       CUstream handle, void** params, void** extra) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  // Read once: a thread_local of a dlopen'ed library costs a call to reach.
  Context* const context = current_context;
  if (context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  KernelOp launch;
  int max_shared = 0;
  {
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    auto found = d.functions.find(handle_id(function, Tag::kFunction));
    if (found == d.functions.end()) return CUDA_ERROR_INVALID_HANDLE;
    // A function of another context's module is no handle here.
    if (found->second.context != context) return CUDA_ERROR_INVALID_HANDLE;
    launch.kernel = found->second.kernel;
    max_shared = found->second.attributes[CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES];
  }
  launch.grid = grid;
  launch.block = block;
  launch.shared_bytes = shared_bytes;
  if (!launch_dimensions_valid(launch.grid, launch.block)) return CUDA_ERROR_INVALID_VALUE;
  if (shared_bytes > static_cast<unsigned>(max_shared)) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult result = pack_parameters(*launch.kernel, params, extra, launch.params); result != CUDA_SUCCESS)
    return result;
  std::shared_ptr<Stream> stream;
  Context* stream_context = nullptr;
  if (CUresult result = resolve_stream(handle, &stream, &stream_context); result != CUDA_SUCCESS) return result;
  if (stream_context != context) return CUDA_ERROR_INVALID_HANDLE;  // another context's stream
  const FoundKernel found = find_kernel(launch.kernel->name);
  launch.implementation = found.implementation;
  launch.waits_for_other_streams = found.waits_for_other_streams;
  launch.context = context;
  if (discovery_enabled()) {
    record_launch(*launch.kernel, grid, block, shared_bytes, launch.implementation != nullptr);
    if (launch.implementation == nullptr) launch.implementation = no_op_kernel;
  }
  if (launch.implementation == nullptr) {
    fmt::print(stderr, "sim: no host implementation for kernel '{}'\n", launch.kernel->name);
    return CUDA_ERROR_LAUNCH_FAILED;
  }
  return stream->submit(Operation{std::move(launch)});
}

// Keeps a configuration string (a copy) for the first cuInit; a later call replaces an earlier one.
CUresult configure_string(const char* value, std::optional<std::string> Driver::*setting) {
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Driver& d = driver();
  if (d.initialized.load(std::memory_order_acquire)) return kIllegalState;
  return guarded([&] {
    std::lock_guard lock(d.mutex);
    d.*setting = value;
    return CUDA_SUCCESS;
  });
}

}  // namespace

// ---- sim/driver_access.h: the driver state the sim's cuBLAS uses -------------------------------------

bool driver_initialized() { return initialized(); }

bool context_current() { return current_context != nullptr; }

const void* current_context_id() { return current_context; }

void set_running_kernel_context(const void* context) { running_kernel_context = context; }

CUresult find_stream(CUstream handle, std::shared_ptr<Stream>* stream) { return resolve_stream(handle, stream); }

bool device_range_valid(std::uintptr_t begin, std::size_t bytes, bool write) {
  std::lock_guard lock(driver().mutex);
  return device_range_valid_locked(begin, bytes, write);
}

int kernel_memory_accessible(const void* address, std::uint64_t bytes, int write) {
  const auto begin = reinterpret_cast<std::uintptr_t>(address);
  if (bytes > std::numeric_limits<std::size_t>::max()) return 0;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  if (device_range_valid_locked(begin, bytes, write != 0, running_kernel_context)) return 1;
  if (begin == 0 || begin + bytes < begin) return 0;
  auto after = d.host_registrations.upper_bound(begin);
  if (after == d.host_registrations.begin()) return 0;
  const auto& [base, registered] = *std::prev(after);
  return begin + bytes <= base + registered ? 1 : 0;
}

}  // namespace gpubroker::sim

using namespace gpubroker::sim;  // NOLINT

extern "C" {

// ---- Initialization and devices --------------------------------------------------------------

GPUBROKER_SIM_API CUresult cuInit(unsigned int flags) {
  return guarded([&] {
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    Driver& d = driver();
    std::call_once(d.init_once, [&] {
      d.init_result = initialize();
      d.initialized.store(d.init_result == CUDA_SUCCESS, std::memory_order_release);
    });
    return d.init_result;
  });
}

// Works before cuInit, as the real driver's does.
GPUBROKER_SIM_API CUresult cuDriverGetVersion(int* version) {
  if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *version = 13000;
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuDeviceGetCount(int* count) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *count = static_cast<int>(driver().devices.size());
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (find_device(ordinal) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  *device = ordinal;
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuDeviceGetName(char* name, int length, CUdevice device) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (name == nullptr || length <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (find_device(device) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
    copy_truncated(kDeviceName, name, length);
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (uuid == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (find_device(device) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  *uuid = device_uuid(device);
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuDeviceTotalMem_v2(std::size_t* bytes, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Device* found = find_device(device);
  if (found == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  *bytes = found->total_bytes;
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attribute, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (find_device(device) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::optional<int> answer = device_attribute(attribute, device);
  if (!answer) return CUDA_ERROR_INVALID_VALUE;
  *value = *answer;
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuDeviceGetPCIBusId(char* bus_id, int length, CUdevice device) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (bus_id == nullptr || length <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (find_device(device) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
    copy_truncated(pci_bus_id(device), bus_id, length);
    return CUDA_SUCCESS;
  });
}

// ---- Contexts ----------------------------------------------------------------------------------

GPUBROKER_SIM_API CUresult cuDevicePrimaryCtxRetain(CUcontext* context, CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Device* found = find_device(device);
  if (found == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard lock(driver().mutex);
  ++found->context.retains;
  *context = reinterpret_cast<CUcontext>(&found->context);
  return CUDA_SUCCESS;
}

// The last release keeps the context and its objects (see the file comment).
GPUBROKER_SIM_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Device* found = find_device(device);
  if (found == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard lock(driver().mutex);
  if (found->context.retains == 0) return CUDA_ERROR_INVALID_CONTEXT;
  --found->context.retains;
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuCtxSetCurrent(CUcontext context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (context == nullptr) {
    current_context = nullptr;
    return CUDA_SUCCESS;
  }
  std::lock_guard lock(driver().mutex);
  Context* found = find_context_locked(context);
  if (found == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  current_context = found;
  return CUDA_SUCCESS;
}

// A new context of `device`, pushed on this thread's stack (current until popped).
GPUBROKER_SIM_API CUresult cuCtxCreate_v2(CUcontext* context, unsigned int flags, CUdevice device) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
    (void)flags;  // scheduling flags: the sim's streams have none to choose
    Device* found = find_device(device);
    if (found == nullptr) return CUDA_ERROR_INVALID_DEVICE;
    auto made = std::make_unique<Context>();
    made->device = found->ordinal;
    made->retains = 1;
    made->null_stream = Stream::start(CU_STREAM_DEFAULT, 0);
    Context* raw = made.get();
    {
      std::lock_guard lock(driver().mutex);
      driver().created_contexts.push_back(std::move(made));
    }
    contexts_below.push_back(current_context);
    current_context = raw;
    *context = reinterpret_cast<CUcontext>(raw);
    return CUDA_SUCCESS;
  });
}

// Waits for the context's work, then retires it. Its objects must be gone already (the broker
// destroys a context after the sessions using it): the sim releases none of them.
GPUBROKER_SIM_API CUresult cuCtxDestroy_v2(CUcontext context) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Context* found = nullptr;
    {
      std::lock_guard lock(driver().mutex);
      for (const auto& created : driver().created_contexts) {
        if (reinterpret_cast<CUcontext>(created.get()) == context && !created->destroyed) found = created.get();
      }
    }
    if (found == nullptr) return CUDA_ERROR_INVALID_CONTEXT;  // a primary context, or none
    (void)found->null_stream->wait_idle();
    {
      std::lock_guard lock(driver().mutex);
      found->destroyed = true;
      driver().retired_streams.push_back(found->null_stream);
    }
    found->null_stream->retire();
    if (current_context == found) current_context = nullptr;
    std::erase(contexts_below, found);
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuCtxPopCurrent_v2(CUcontext* context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (context != nullptr) *context = reinterpret_cast<CUcontext>(current_context);
  current_context = contexts_below.empty() ? nullptr : contexts_below.back();
  if (!contexts_below.empty()) contexts_below.pop_back();
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuCtxGetCurrent(CUcontext* context) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *context = reinterpret_cast<CUcontext>(current_context);
  return CUDA_SUCCESS;
}

// Waits for the NULL stream and every stream of the current context; returns the first sticky
// error among them.
GPUBROKER_SIM_API CUresult cuCtxSynchronize() {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Context* context = current_context;
    if (context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    std::vector<std::shared_ptr<Stream>> streams{context->null_stream};
    {
      Driver& d = driver();
      std::lock_guard lock(d.mutex);
      for (const auto& [id, entry] : d.streams)
        if (entry.context == context) streams.push_back(entry.stream);
    }
    CUresult first = CUDA_SUCCESS;
    for (const auto& stream : streams) {
      CUresult result = stream->wait_idle();
      if (first == CUDA_SUCCESS) first = result;
    }
    return first;
  });
}

GPUBROKER_SIM_API CUresult cuCtxGetLimit(std::size_t* value, CUlimit limit) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (limit < 0 || limit >= CU_LIMIT_MAX) return CUDA_ERROR_UNSUPPORTED_LIMIT;
  std::lock_guard lock(driver().mutex);
  *value = current_context->limits[limit];
  return CUDA_SUCCESS;
}

// The ranges an H100 accepts: stack up to 512 KiB per thread, L2 fetch granularity 0..128, the
// persisting L2 size up to 75% of the 50 MiB L2; the others any value.
GPUBROKER_SIM_API CUresult cuCtxSetLimit(CUlimit limit, std::size_t value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (limit < 0 || limit >= CU_LIMIT_MAX) return CUDA_ERROR_UNSUPPORTED_LIMIT;
  if ((limit == 0 && value > (512u << 10)) || (limit == 5 && value > 128) || (limit == 6 && value > (50u << 20) / 4 * 3))
    return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard lock(driver().mutex);
  current_context->limits[limit] = value;
  return CUDA_SUCCESS;
}

// ---- Memory --------------------------------------------------------------------------------------

GPUBROKER_SIM_API CUresult cuMemAlloc_v2(CUdeviceptr* pointer, std::size_t bytes) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    if (pointer == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    return allocate_locked(*d.devices[static_cast<std::size_t>(current_context->device)], bytes, false, pointer);
  });
}

GPUBROKER_SIM_API CUresult cuMemFree_v2(CUdeviceptr pointer) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    Driver& d = driver();
    {
      std::lock_guard lock(d.mutex);
      auto found = d.allocations.find(pointer);
      if (found == d.allocations.end() || found->second.module_owned) return CUDA_ERROR_INVALID_VALUE;
    }
    wait_for_all_streams();
    std::lock_guard lock(d.mutex);
    auto found = d.allocations.find(pointer);  // again: another thread may have freed it meanwhile
    if (found == d.allocations.end() || found->second.module_owned) return CUDA_ERROR_INVALID_VALUE;
    free_locked(found);
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuMemGetInfo_v2(std::size_t* free, std::size_t* total) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (free == nullptr || total == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  const Device& device = *d.devices[static_cast<std::size_t>(current_context->device)];
  *free = device.total_bytes - device.used_bytes;
  *total = device.total_bytes;
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr destination, const void* source, std::size_t bytes,
                                                CUstream stream) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    return copy_1d(reinterpret_cast<void*>(destination), source, bytes, CopyKind::kHostToDevice, stream);
  });
}

GPUBROKER_SIM_API CUresult cuMemcpyDtoHAsync_v2(void* destination, CUdeviceptr source, std::size_t bytes,
                                                CUstream stream) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    return copy_1d(destination, reinterpret_cast<const void*>(source), bytes, CopyKind::kDeviceToHost, stream);
  });
}

GPUBROKER_SIM_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr destination, CUdeviceptr source, std::size_t bytes,
                                                CUstream stream) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    return copy_1d(reinterpret_cast<void*>(destination), reinterpret_cast<const void*>(source), bytes,
                   CopyKind::kDeviceToDevice, stream);
  });
}

// Every device's memory is host memory in one address space, so a copy between devices is a
// device-to-device copy once both contexts are known to be the devices' primary contexts.
GPUBROKER_SIM_API CUresult cuMemcpyPeerAsync(CUdeviceptr destination, CUcontext destination_context, CUdeviceptr source,
                                             CUcontext source_context, std::size_t bytes, CUstream stream) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    {
      std::lock_guard lock(driver().mutex);
      if (find_context_locked(destination_context) == nullptr || find_context_locked(source_context) == nullptr)
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    return copy_1d(reinterpret_cast<void*>(destination), reinterpret_cast<const void*>(source), bytes,
                   CopyKind::kDeviceToDevice, stream);
  });
}

// Host and device memory types only (the sim has no CUDA arrays: CUDA_ERROR_NOT_SUPPORTED).
GPUBROKER_SIM_API CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* copy, CUstream stream) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (copy == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto is_known = [](CUmemorytype type) { return type == CU_MEMORYTYPE_HOST || type == CU_MEMORYTYPE_DEVICE; };
    if (!is_known(copy->srcMemoryType) || !is_known(copy->dstMemoryType)) {
      return (copy->srcMemoryType == 3 || copy->dstMemoryType == 3) ? CUDA_ERROR_NOT_SUPPORTED
                                                                    : CUDA_ERROR_INVALID_VALUE;
    }
    if (copy->Height > 1 && (copy->srcPitch < copy->WidthInBytes || copy->dstPitch < copy->WidthInBytes))
      return CUDA_ERROR_INVALID_VALUE;
    const bool from_device = copy->srcMemoryType == CU_MEMORYTYPE_DEVICE;
    const bool to_device = copy->dstMemoryType == CU_MEMORYTYPE_DEVICE;
    const auto* source = from_device ? reinterpret_cast<const unsigned char*>(copy->srcDevice)
                                     : static_cast<const unsigned char*>(copy->srcHost);
    auto* destination = to_device ? reinterpret_cast<unsigned char*>(copy->dstDevice)
                                  : static_cast<unsigned char*>(copy->dstHost);
    if (source == nullptr || destination == nullptr) return CUDA_ERROR_INVALID_VALUE;
    CopyOp op;
    op.source = source + copy->srcY * copy->srcPitch + copy->srcXInBytes;
    op.destination = destination + copy->dstY * copy->dstPitch + copy->dstXInBytes;
    op.width = copy->WidthInBytes;
    op.height = copy->Height;
    op.source_pitch = copy->srcPitch;
    op.destination_pitch = copy->dstPitch;
    op.kind = from_device ? (to_device ? CopyKind::kDeviceToDevice : CopyKind::kDeviceToHost)
                          : (to_device ? CopyKind::kHostToDevice : CopyKind::kHostToHost);
    if (CUresult result = check_copy(op, from_device, to_device); result != CUDA_SUCCESS) return result;
    return submit_copy(std::move(op), stream);
  });
}

namespace {

// cuMemsetD8/16/32Async: `count` elements of `element_bytes`, the destination aligned to one.
CUresult memset_async(CUdeviceptr destination, std::uint32_t value, std::size_t count, std::uint32_t element_bytes,
                      CUstream stream_handle) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    std::size_t bytes = 0;
    if (__builtin_mul_overflow(count, element_bytes, &bytes) || destination % element_bytes != 0) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    if (!device_range_valid(destination, bytes, true)) return CUDA_ERROR_INVALID_VALUE;
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(stream_handle, &stream); result != CUDA_SUCCESS) return result;
    if (count == 0) return CUDA_SUCCESS;
    return stream->submit(Operation{MemsetOp{reinterpret_cast<unsigned char*>(destination), value, count, element_bytes}});
  });
}

}  // namespace

GPUBROKER_SIM_API CUresult cuMemsetD8Async(CUdeviceptr destination, unsigned char value, std::size_t count,
                                           CUstream stream) {
  return memset_async(destination, value, count, 1, stream);
}

GPUBROKER_SIM_API CUresult cuMemsetD16Async(CUdeviceptr destination, unsigned short value, std::size_t count,
                                            CUstream stream) {
  return memset_async(destination, value, count, 2, stream);
}

GPUBROKER_SIM_API CUresult cuMemsetD32Async(CUdeviceptr destination, unsigned value, std::size_t count, CUstream stream) {
  return memset_async(destination, value, count, 4, stream);
}

// Registration is bookkeeping only: every host address is already usable by sim copies.
GPUBROKER_SIM_API CUresult cuMemHostRegister_v2(void* pointer, std::size_t bytes, unsigned flags) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    if (pointer == nullptr || bytes == 0 || (flags & ~kHostRegisterFlagsKnown) != 0) return CUDA_ERROR_INVALID_VALUE;
    const auto begin = reinterpret_cast<std::uintptr_t>(pointer);
    if (begin + bytes < begin) return CUDA_ERROR_INVALID_VALUE;
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    auto after = d.host_registrations.lower_bound(begin);
    if (after != d.host_registrations.end() && after->first < begin + bytes)
      return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    if (after != d.host_registrations.begin()) {
      const auto& [base, size] = *std::prev(after);
      if (base + size > begin) return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    }
    d.host_registrations.emplace(begin, bytes);
    count(counters().live_host_registrations);
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuMemHostUnregister(void* pointer) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
  if (pointer == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  if (d.host_registrations.erase(reinterpret_cast<std::uintptr_t>(pointer)) == 0)
    return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
  uncount(counters().live_host_registrations);
  return CUDA_SUCCESS;
}

// ---- Virtual memory management ---------------------------------------------------------------------

// The hint address is ignored (the driver may ignore it too).
GPUBROKER_SIM_API CUresult cuMemAddressReserve(CUdeviceptr* pointer, std::size_t size, std::size_t alignment,
                                               CUdeviceptr /*hint*/, unsigned long long flags) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (pointer == nullptr || size == 0 || size % kVmmGranularity != 0 || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (alignment == 0) alignment = kVmmGranularity;
    if ((alignment & (alignment - 1)) != 0 || size + alignment < size) return CUDA_ERROR_INVALID_VALUE;
    alignment = std::max(alignment, kPageBytes);
    const std::size_t span = size + alignment;
    void* memory = mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    const auto start = reinterpret_cast<std::uintptr_t>(memory);
    const std::uintptr_t base = round_up(start, alignment);
    if (base > start) munmap(memory, base - start);
    if (start + span > base + size) munmap(reinterpret_cast<void*>(base + size), start + span - (base + size));
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    d.reservations.emplace(base, size);
    count(counters().live_vmm_reservations);
    *pointer = base;
    return CUDA_SUCCESS;
  });
}

// Refuses (CUDA_ERROR_INVALID_VALUE) a range that still has mappings.
GPUBROKER_SIM_API CUresult cuMemAddressFree(CUdeviceptr pointer, std::size_t size) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  auto found = d.reservations.find(pointer);
  if (found == d.reservations.end() || found->second != size) return CUDA_ERROR_INVALID_VALUE;
  auto mapped = d.mappings.lower_bound(pointer);
  if (mapped != d.mappings.end() && mapped->first < pointer + size) return CUDA_ERROR_INVALID_VALUE;
  munmap(reinterpret_cast<void*>(pointer), size);
  d.reservations.erase(found);
  uncount(counters().live_vmm_reservations);
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, std::size_t size,
                                       const CUmemAllocationProp* prop, unsigned long long flags) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (handle == nullptr || prop == nullptr || flags != 0 || size == 0 || size % kVmmGranularity != 0)
      return CUDA_ERROR_INVALID_VALUE;
    if (prop->type != CU_MEM_ALLOCATION_TYPE_PINNED || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
      return CUDA_ERROR_INVALID_VALUE;
    Device* device = find_device(prop->location.id);
    if (device == nullptr) return CUDA_ERROR_INVALID_DEVICE;
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    if (!reserve_device_memory_locked(*device, size)) return CUDA_ERROR_OUT_OF_MEMORY;
    auto physical = std::make_shared<Physical>();
    physical->fd = memfd_create("gpubroker-sim-vmm", MFD_CLOEXEC);
    if (physical->fd < 0 || ftruncate(physical->fd, static_cast<off_t>(size)) != 0) {
      if (physical->fd >= 0) close(physical->fd);
      release_device_memory_locked(device->ordinal, size);
      return CUDA_ERROR_OUT_OF_MEMORY;
    }
    physical->bytes = size;
    physical->device = device->ordinal;
    const std::uint64_t id = d.next_id++;
    d.physical.emplace(id, std::move(physical));
    *handle = id;
    return CUDA_SUCCESS;
  });
}

// The memory is freed once it is also unmapped everywhere.
GPUBROKER_SIM_API CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  auto found = d.physical.find(handle);
  if (found == d.physical.end()) return CUDA_ERROR_INVALID_VALUE;
  std::shared_ptr<Physical> physical = std::move(found->second);
  d.physical.erase(found);
  physical->released = true;
  if (physical->mappings == 0) destroy_physical_locked(*physical);
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuMemMap(CUdeviceptr pointer, std::size_t size, std::size_t offset,
                                    CUmemGenericAllocationHandle handle, unsigned long long flags) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (flags != 0 || size == 0 || pointer % kVmmGranularity != 0 || size % kVmmGranularity != 0 ||
        offset % kVmmGranularity != 0)
      return CUDA_ERROR_INVALID_VALUE;
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    auto physical = d.physical.find(handle);
    if (physical == d.physical.end()) return CUDA_ERROR_INVALID_VALUE;
    if (offset > physical->second->bytes || size > physical->second->bytes - offset) return CUDA_ERROR_INVALID_VALUE;
    auto reservation = d.reservations.upper_bound(pointer);
    if (reservation == d.reservations.begin()) return CUDA_ERROR_INVALID_VALUE;
    reservation = std::prev(reservation);
    if (pointer + size < pointer || pointer + size > reservation->first + reservation->second)
      return CUDA_ERROR_INVALID_VALUE;
    auto next = d.mappings.lower_bound(pointer);
    if (next != d.mappings.end() && next->first < pointer + size) return CUDA_ERROR_INVALID_VALUE;
    if (next != d.mappings.begin() && std::prev(next)->first + std::prev(next)->second.bytes > pointer)
      return CUDA_ERROR_INVALID_VALUE;
    void* mapped = mmap(reinterpret_cast<void*>(pointer), size, PROT_NONE, MAP_SHARED | MAP_FIXED,
                        physical->second->fd, static_cast<off_t>(offset));
    if (mapped == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    ++physical->second->mappings;
    d.mappings.emplace(pointer, Mapping{size, physical->second, CU_MEM_ACCESS_FLAGS_PROT_NONE});
    count(counters().live_vmm_mappings);
    return CUDA_SUCCESS;
  });
}

// [pointer, pointer + size) must be whole mappings, back to back.
GPUBROKER_SIM_API CUresult cuMemUnmap(CUdeviceptr pointer, std::size_t size) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (size == 0) return CUDA_ERROR_INVALID_VALUE;
    Driver& d = driver();
    auto covered_locked = [&] {
      std::uintptr_t position = pointer;
      for (auto it = d.mappings.find(pointer); it != d.mappings.end() && it->first == position; ++it) {
        position += it->second.bytes;
        if (position == pointer + size) return true;
        if (position > pointer + size) return false;
      }
      return false;
    };
    {
      std::lock_guard lock(d.mutex);
      if (!covered_locked()) return CUDA_ERROR_INVALID_VALUE;
    }
    wait_for_all_streams();
    std::lock_guard lock(d.mutex);
    if (!covered_locked()) return CUDA_ERROR_INVALID_VALUE;
    // Back to an inaccessible reservation.
    mmap(reinterpret_cast<void*>(pointer), size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
         -1, 0);
    auto it = d.mappings.find(pointer);
    while (it != d.mappings.end() && it->first < pointer + size) {
      std::shared_ptr<Physical> physical = it->second.physical;
      it = d.mappings.erase(it);
      uncount(counters().live_vmm_mappings);
      if (--physical->mappings == 0 && physical->released) destroy_physical_locked(*physical);
    }
    return CUDA_SUCCESS;
  });
}

// Device locations only; the range must be whole mappings, back to back.
GPUBROKER_SIM_API CUresult cuMemSetAccess(CUdeviceptr pointer, std::size_t size, const CUmemAccessDesc* descriptors,
                                          std::size_t count) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (descriptors == nullptr || count == 0 || size == 0) return CUDA_ERROR_INVALID_VALUE;
    int access = CU_MEM_ACCESS_FLAGS_PROT_NONE;
    for (std::size_t i = 0; i < count; ++i) {
      const CUmemAccessDesc& descriptor = descriptors[i];
      if (descriptor.location.type != CU_MEM_LOCATION_TYPE_DEVICE) return CUDA_ERROR_INVALID_VALUE;
      if (find_device(descriptor.location.id) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
      if (descriptor.flags != CU_MEM_ACCESS_FLAGS_PROT_NONE && descriptor.flags != CU_MEM_ACCESS_FLAGS_PROT_READ &&
          descriptor.flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
        return CUDA_ERROR_INVALID_VALUE;
      access |= descriptor.flags;
    }
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    std::vector<Mapping*> covered;
    std::uintptr_t position = pointer;
    for (auto it = d.mappings.find(pointer); it != d.mappings.end() && it->first == position; ++it) {
      covered.push_back(&it->second);
      position += it->second.bytes;
      if (position >= pointer + size) break;
    }
    if (position != pointer + size) return CUDA_ERROR_INVALID_VALUE;
    const int protection = access == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ? PROT_READ | PROT_WRITE
                           : access == CU_MEM_ACCESS_FLAGS_PROT_READ    ? PROT_READ
                                                                        : PROT_NONE;
    if (mprotect(reinterpret_cast<void*>(pointer), size, protection) != 0) return CUDA_ERROR_INVALID_VALUE;
    for (Mapping* mapping : covered) mapping->access = access;
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuMemGetAllocationGranularity(std::size_t* granularity, const CUmemAllocationProp* prop,
                                                         CUmemAllocationGranularity_flags option) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (granularity == nullptr || prop == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM && option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)
    return CUDA_ERROR_INVALID_VALUE;
  if (prop->type != CU_MEM_ALLOCATION_TYPE_PINNED || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
    return CUDA_ERROR_INVALID_VALUE;
  if (find_device(prop->location.id) == nullptr) return CUDA_ERROR_INVALID_DEVICE;
  *granularity = kVmmGranularity;
  return CUDA_SUCCESS;
}

// ---- Streams -----------------------------------------------------------------------------------

// Priorities are clamped to the H100 range [-5, 0] and otherwise ignored.
GPUBROKER_SIM_API CUresult cuStreamCreateWithPriority(CUstream* stream, unsigned flags, int priority) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    if (stream == nullptr || (flags & ~CU_STREAM_NON_BLOCKING) != 0) return CUDA_ERROR_INVALID_VALUE;
    priority = std::clamp(priority, kGreatestStreamPriority, 0);
    auto started = Stream::start(flags, priority);
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    const std::uint64_t id = d.next_id++;
    d.streams.emplace(id, StreamEntry{std::move(started), current_context});
    count(counters().live_streams);
    *stream = make_handle<CUstream>(id, Tag::kStream);
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuStreamGetPriority(CUstream handle, int* priority) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (priority == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(handle, &stream); result != CUDA_SUCCESS) return result;
    *priority = stream->priority();
    return CUDA_SUCCESS;
  });
}

// Returns at once; queued work still completes (as documented for the driver).
GPUBROKER_SIM_API CUresult cuStreamDestroy_v2(CUstream stream) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Driver& d = driver();
    std::shared_ptr<Stream> retired;
    {
      std::lock_guard lock(d.mutex);
      auto found = d.streams.find(handle_id(stream, Tag::kStream));
      if (found == d.streams.end()) return CUDA_ERROR_INVALID_HANDLE;
      retired = std::move(found->second.stream);
      d.streams.erase(found);
      std::erase_if(d.retired_streams, [](const std::weak_ptr<Stream>& r) { return r.expired(); });
      d.retired_streams.push_back(retired);
      uncount(counters().live_streams);
    }
    retired->retire();
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuStreamSynchronize(CUstream handle) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(handle, &stream); result != CUDA_SUCCESS) return result;
    return stream->synchronize();
  });
}

GPUBROKER_SIM_API CUresult cuStreamQuery(CUstream handle) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(handle, &stream); result != CUDA_SUCCESS) return result;
    return stream->query();
  });
}

GPUBROKER_SIM_API CUresult cuStreamWaitEvent(CUstream handle, CUevent event_handle, unsigned flags) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (flags > 1) return CUDA_ERROR_INVALID_VALUE;  // CU_EVENT_WAIT_DEFAULT, CU_EVENT_WAIT_EXTERNAL
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(handle, &stream); result != CUDA_SUCCESS) return result;
    std::shared_ptr<Event> event = find_event(event_handle);
    if (event == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return stream->submit(Operation{EventWaitOp{std::move(event), 0}});
  });
}

GPUBROKER_SIM_API CUresult cuLaunchHostFunc(CUstream handle, CUhostFn function, void* user_data) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (function == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(handle, &stream); result != CUDA_SUCCESS) return result;
    return stream->submit(Operation{HostFuncOp{function, user_data}});
  });
}

// ---- Events ------------------------------------------------------------------------------------

GPUBROKER_SIM_API CUresult cuEventCreate(CUevent* event, unsigned flags) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    if (event == nullptr || (flags & ~kEventFlagsKnown) != 0) return CUDA_ERROR_INVALID_VALUE;
    if ((flags & kEventInterprocess) != 0 && (flags & CU_EVENT_DISABLE_TIMING) == 0) return CUDA_ERROR_INVALID_VALUE;
    auto created = std::make_shared<Event>(flags);
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    const std::uint64_t id = d.next_id++;
    d.events.emplace(id, EventEntry{std::move(created), current_context});
    count(counters().live_events);
    *event = make_handle<CUevent>(id, Tag::kEvent);
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuEventRecord(CUevent event_handle, CUstream handle) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Context* event_context = nullptr;
    std::shared_ptr<Event> event = find_event(event_handle, &event_context);
    if (event == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    std::shared_ptr<Stream> stream;
    Context* stream_context = nullptr;
    if (CUresult result = resolve_stream(handle, &stream, &stream_context); result != CUDA_SUCCESS) return result;
    if (stream_context != event_context) return CUDA_ERROR_INVALID_HANDLE;  // streams of its own context only
    return stream->submit(Operation{EventRecordOp{std::move(event), 0}});
  });
}

// In a capture, the sim records every event as a node that records it on replay, which is what
// cudaEventRecordExternal asks for; outside one the flag changes nothing.
GPUBROKER_SIM_API CUresult cuEventRecordWithFlags(CUevent event_handle, CUstream handle, unsigned flags) {
  if ((flags & ~CU_EVENT_RECORD_EXTERNAL) != 0) return CUDA_ERROR_INVALID_VALUE;
  return cuEventRecord(event_handle, handle);
}

// An event never recorded is complete, as with the driver.
GPUBROKER_SIM_API CUresult cuEventQuery(CUevent event_handle) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    std::shared_ptr<Event> event = find_event(event_handle);
    if (event == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    Event::State state = event->state();
    return state.completed >= state.recorded ? state.fault : CUDA_ERROR_NOT_READY;
  });
}

GPUBROKER_SIM_API CUresult cuEventSynchronize(CUevent event_handle) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    std::shared_ptr<Event> event = find_event(event_handle);
    if (event == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    event->wait(event->latest_record());
    return event->state().fault;
  });
}

GPUBROKER_SIM_API CUresult cuEventElapsedTime_v2(float* milliseconds, CUevent start_handle, CUevent end_handle) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (milliseconds == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::shared_ptr<Event> start = find_event(start_handle);
    std::shared_ptr<Event> end = find_event(end_handle);
    if (start == nullptr || end == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    if (!start->timing_enabled() || !end->timing_enabled()) return CUDA_ERROR_INVALID_HANDLE;
    Event::State first = start->state();
    Event::State second = end->state();
    if (first.recorded == 0 || second.recorded == 0) return CUDA_ERROR_INVALID_HANDLE;
    if (first.completed < first.recorded || second.completed < second.recorded) return CUDA_ERROR_NOT_READY;
    *milliseconds = std::chrono::duration<float, std::milli>(second.completed_at - first.completed_at).count();
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuEventDestroy_v2(CUevent event) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  if (d.events.erase(handle_id(event, Tag::kEvent)) == 0) return CUDA_ERROR_INVALID_HANDLE;
  uncount(counters().live_events);
  return CUDA_SUCCESS;
}

// ---- Stream capture and graphs ---------------------------------------------------------------------
//
// A capture records each operation submitted to the capturing stream, in order, as a node of one
// linear graph; cross-stream capture (joining other streams through events) is not modelled:
// event records and waits on the capturing stream become event record and wait nodes.

GPUBROKER_SIM_API CUresult cuStreamBeginCapture_v2(CUstream handle, CUstreamCaptureMode mode) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (reinterpret_cast<std::uintptr_t>(handle) <= 2) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(handle, &stream); result != CUDA_SUCCESS) return result;
    return stream->begin_capture(mode);
  });
}

GPUBROKER_SIM_API CUresult cuStreamEndCapture(CUstream handle, CUgraph* graph) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (reinterpret_cast<std::uintptr_t>(handle) <= 2) return kIllegalState;
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(handle, &stream); result != CUDA_SUCCESS) return result;
    std::shared_ptr<Graph> captured;
    CUresult result = stream->end_capture(&captured);
    if (result == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED) *graph = nullptr;
    if (result != CUDA_SUCCESS) return result;
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    const std::uint64_t id = d.next_id++;
    d.graphs.emplace(id, std::move(captured));
    count(counters().live_graphs);
    *graph = make_handle<CUgraph>(id, Tag::kGraph);
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuStreamIsCapturing(CUstream handle, CUstreamCaptureStatus* status) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(handle, &stream); result != CUDA_SUCCESS) return result;
    *status = stream->capture_status();
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph, unsigned long long flags) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (exec == nullptr || (flags & ~0xFull) != 0) return CUDA_ERROR_INVALID_VALUE;
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    auto found = d.graphs.find(handle_id(graph, Tag::kGraph));
    if (found == d.graphs.end()) return CUDA_ERROR_INVALID_VALUE;
    auto instance = std::make_shared<Graph>(*found->second);
    const std::uint64_t id = d.next_id++;
    d.execs.emplace(id, std::move(instance));
    count(counters().live_graph_execs);
    *exec = make_handle<CUgraphExec>(id, Tag::kExec);
    return CUDA_SUCCESS;
  });
}

// Enqueues a copy of the exec's nodes, in order, after re-checking their device ranges.
GPUBROKER_SIM_API CUresult cuGraphLaunch(CUgraphExec exec, CUstream handle) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    std::shared_ptr<Stream> stream;
    if (CUresult result = resolve_stream(handle, &stream); result != CUDA_SUCCESS) return result;
    std::vector<Operation> nodes;
    {
      Driver& d = driver();
      std::lock_guard lock(d.mutex);
      auto found = d.execs.find(handle_id(exec, Tag::kExec));
      if (found == d.execs.end()) return CUDA_ERROR_INVALID_HANDLE;
      if (!graph_ranges_valid_locked(*found->second)) return CUDA_ERROR_INVALID_VALUE;
      nodes = found->second->nodes;
    }
    CUresult result = stream->submit(std::move(nodes));
    if (result == CUDA_SUCCESS) count(counters().graphs_launched);
    return result;
  });
}

// Same node kinds in the same order and the same kernel functions and copy directions; then
// every node's parameters are replaced. The sim has no node handles: errorNode and
// errorFromNode are always NULL.
GPUBROKER_SIM_API CUresult cuGraphExecUpdate_v2(CUgraphExec exec, CUgraph graph, CUgraphExecUpdateResultInfo* info) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (info == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    auto target = d.execs.find(handle_id(exec, Tag::kExec));
    auto source = d.graphs.find(handle_id(graph, Tag::kGraph));
    if (target == d.execs.end() || source == d.graphs.end()) return CUDA_ERROR_INVALID_VALUE;
    info->errorNode = nullptr;
    info->errorFromNode = nullptr;
    auto fail = [&](CUgraphExecUpdateResult reason) {
      info->result = reason;
      return CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE;
    };
    const auto& old_nodes = target->second->nodes;
    const auto& new_nodes = source->second->nodes;
    if (old_nodes.size() != new_nodes.size()) return fail(CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED);
    for (std::size_t i = 0; i < old_nodes.size(); ++i) {
      if (old_nodes[i].index() != new_nodes[i].index()) return fail(CU_GRAPH_EXEC_UPDATE_ERROR_NODE_TYPE_CHANGED);
      if (const auto* kernel = std::get_if<KernelOp>(&old_nodes[i]);
          kernel != nullptr && kernel->kernel != std::get<KernelOp>(new_nodes[i]).kernel)
        return fail(CU_GRAPH_EXEC_UPDATE_ERROR_FUNCTION_CHANGED);
      if (const auto* copy = std::get_if<CopyOp>(&old_nodes[i]);
          copy != nullptr && copy->kind != std::get<CopyOp>(new_nodes[i]).kind)
        return fail(CU_GRAPH_EXEC_UPDATE_ERROR_PARAMETERS_CHANGED);
    }
    target->second->nodes = new_nodes;
    info->result = CU_GRAPH_EXEC_UPDATE_SUCCESS;
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuGraphExecDestroy(CUgraphExec exec) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  if (d.execs.erase(handle_id(exec, Tag::kExec)) == 0) return CUDA_ERROR_INVALID_VALUE;
  uncount(counters().live_graph_execs);
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuGraphDestroy(CUgraph graph) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  if (d.graphs.erase(handle_id(graph, Tag::kGraph)) == 0) return CUDA_ERROR_INVALID_VALUE;
  uncount(counters().live_graphs);
  return CUDA_SUCCESS;
}

// Node handles name a graph's node by index: as the nodes of a captured graph, in capture order.
GPUBROKER_SIM_API CUresult cuGraphGetNodes(CUgraph graph, CUgraphNode* nodes, std::size_t* count) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  const std::uint64_t id = handle_id(graph, Tag::kGraph);
  auto found = d.graphs.find(id);
  if (found == d.graphs.end()) return CUDA_ERROR_INVALID_VALUE;
  const std::size_t size = found->second->nodes.size();
  if (size >> kNodeIndexBits != 0) return CUDA_ERROR_NOT_SUPPORTED;
  if (nodes != nullptr) {
    // As the driver: the entries past the graph's nodes are NULL, and the count says how many.
    for (std::size_t i = 0; i < *count; ++i) nodes[i] = i < size ? make_handle<CUgraphNode>(node_id(id, i), Tag::kNode) : nullptr;
  }
  *count = size;
  return CUDA_SUCCESS;
}

namespace {

// The node a handle names, or nullptr (Driver::mutex held).
const Operation* node_locked(CUgraphNode node) {
  const std::uint64_t id = handle_id(node, Tag::kNode);
  Driver& d = driver();
  auto found = d.graphs.find(id >> kNodeIndexBits);
  const std::size_t index = id & ((1u << kNodeIndexBits) - 1);
  if (id == 0 || found == d.graphs.end() || index >= found->second->nodes.size()) return nullptr;
  return &found->second->nodes[index];
}

}  // namespace

// cuBLAS's GEMMs and TRSMs are kernels on a GPU, and so they are here.
GPUBROKER_SIM_API CUresult cuGraphNodeGetType(CUgraphNode node, CUgraphNodeType* type) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (type == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard lock(driver().mutex);
  const Operation* operation = node_locked(node);
  if (operation == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *type = std::visit(
      [](const auto& op) -> CUgraphNodeType {
        using Op = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<Op, CopyOp>) return CU_GRAPH_NODE_TYPE_MEMCPY;
        if constexpr (std::is_same_v<Op, MemsetOp>) return CU_GRAPH_NODE_TYPE_MEMSET;
        if constexpr (std::is_same_v<Op, HostFuncOp>) return CU_GRAPH_NODE_TYPE_HOST;
        if constexpr (std::is_same_v<Op, EventRecordOp>) return CU_GRAPH_NODE_TYPE_EVENT_RECORD;
        if constexpr (std::is_same_v<Op, EventWaitOp>) return CU_GRAPH_NODE_TYPE_WAIT_EVENT;
        return CU_GRAPH_NODE_TYPE_KERNEL;  // kernels, GEMMs, TRSMs
      },
      *operation);
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuGraphMemcpyNodeGetParams(CUgraphNode node, CUDA_MEMCPY3D* params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard lock(driver().mutex);
  const Operation* operation = node_locked(node);
  const auto* copy = operation != nullptr ? std::get_if<CopyOp>(operation) : nullptr;
  if (copy == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *params = CUDA_MEMCPY3D{};
  const bool from_device = copy->kind == CopyKind::kDeviceToHost || copy->kind == CopyKind::kDeviceToDevice;
  const bool to_device = copy->kind == CopyKind::kHostToDevice || copy->kind == CopyKind::kDeviceToDevice;
  params->srcMemoryType = from_device ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
  if (from_device) {
    params->srcDevice = reinterpret_cast<CUdeviceptr>(copy->source);
  } else {
    params->srcHost = copy->source;
  }
  params->dstMemoryType = to_device ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
  if (to_device) {
    params->dstDevice = reinterpret_cast<CUdeviceptr>(copy->destination);
  } else {
    params->dstHost = copy->destination;
  }
  params->srcPitch = copy->source_pitch;
  params->dstPitch = copy->destination_pitch;
  params->srcHeight = params->dstHeight = copy->height;
  params->WidthInBytes = copy->width;
  params->Height = copy->height;
  params->Depth = 1;
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuGraphMemsetNodeGetParams(CUgraphNode node, CUDA_MEMSET_NODE_PARAMS* params) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::lock_guard lock(driver().mutex);
  const Operation* operation = node_locked(node);
  const auto* memset = operation != nullptr ? std::get_if<MemsetOp>(operation) : nullptr;
  if (memset == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *params = CUDA_MEMSET_NODE_PARAMS{reinterpret_cast<CUdeviceptr>(memset->destination), 0, memset->value,
                                    memset->element_bytes, memset->count, 1};
  return CUDA_SUCCESS;
}

// ---- Modules and functions -------------------------------------------------------------------------

GPUBROKER_SIM_API CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (current_context == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    if (module == nullptr || image == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto read = read_module_image(image, kDeviceArch);
    if (!read) {
      fmt::print(stderr, "sim: cuModuleLoadData: {}\n", read.error().detail);
      return read.error().code;
    }
    ModuleImage& contents = read.value();
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    Device& device = *d.devices[static_cast<std::size_t>(current_context->device)];
    Module loaded;
    for (const GlobalVariable& variable : contents.globals) {
      CUdeviceptr pointer = 0;
      if (CUresult result = allocate_locked(device, variable.bytes, true, &pointer); result != CUDA_SUCCESS) {
        for (const auto& [name, global] : loaded.globals) free_locked(d.allocations.find(global.pointer));
        return result;
      }
      if (!variable.initial.empty())
        std::memcpy(reinterpret_cast<void*>(pointer), variable.initial.data(), variable.initial.size());
      loaded.globals.emplace(variable.name, GlobalEntry{pointer, variable.bytes});
    }
    const std::uint64_t module_id = d.next_id++;
    for (auto& kernel : contents.kernels) {
      const std::uint64_t function_id = d.next_id++;
      d.functions.emplace(function_id,
                          Function{std::move(kernel), module_id, default_function_attributes(), 0, current_context});
      loaded.functions.push_back(function_id);
    }
    d.modules.emplace(module_id, std::move(loaded));
    count(counters().live_modules);
    *module = make_handle<CUmodule>(module_id, Tag::kModule);
    return CUDA_SUCCESS;
  });
}

// Waits for all queued work first (the module's globals are unmapped).
GPUBROKER_SIM_API CUresult cuModuleUnload(CUmodule module) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    Driver& d = driver();
    const std::uint64_t id = handle_id(module, Tag::kModule);
    {
      std::lock_guard lock(d.mutex);
      if (d.modules.find(id) == d.modules.end()) return CUDA_ERROR_INVALID_HANDLE;
    }
    wait_for_all_streams();
    std::lock_guard lock(d.mutex);
    auto found = d.modules.find(id);
    if (found == d.modules.end()) return CUDA_ERROR_INVALID_HANDLE;
    for (std::uint64_t function : found->second.functions) d.functions.erase(function);
    for (const auto& [name, global] : found->second.globals) {
      auto allocation = d.allocations.find(global.pointer);
      if (allocation != d.allocations.end()) free_locked(allocation);
    }
    d.modules.erase(found);
    uncount(counters().live_modules);
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (function == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    auto found = d.modules.find(handle_id(module, Tag::kModule));
    if (found == d.modules.end()) return CUDA_ERROR_INVALID_HANDLE;
    for (std::uint64_t id : found->second.functions) {
      if (d.functions.at(id).kernel->name == name) {
        *function = make_handle<CUfunction>(id, Tag::kFunction);
        return CUDA_SUCCESS;
      }
    }
    return CUDA_ERROR_NOT_FOUND;
  });
}

GPUBROKER_SIM_API CUresult cuModuleGetGlobal_v2(CUdeviceptr* pointer, std::size_t* bytes, CUmodule module,
                                                const char* name) {
  return guarded([&] {
    if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
    if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    auto found = d.modules.find(handle_id(module, Tag::kModule));
    if (found == d.modules.end()) return CUDA_ERROR_INVALID_HANDLE;
    auto global = found->second.globals.find(std::string_view(name));
    if (global == found->second.globals.end()) return CUDA_ERROR_NOT_FOUND;
    if (pointer != nullptr) *pointer = global->second.pointer;
    if (bytes != nullptr) *bytes = global->second.bytes;
    return CUDA_SUCCESS;
  });
}

GPUBROKER_SIM_API CUresult cuFuncGetAttribute(int* value, CUfunction_attribute attribute, CUfunction function) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr || attribute < 0 || attribute >= kFuncAttributeEnd) return CUDA_ERROR_INVALID_VALUE;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  auto found = d.functions.find(handle_id(function, Tag::kFunction));
  if (found == d.functions.end()) return CUDA_ERROR_INVALID_HANDLE;
  *value = found->second.attributes[static_cast<std::size_t>(attribute)];
  return CUDA_SUCCESS;
}

// Settable: the dynamic shared memory limit (up to 227 KiB), the carveout (-1..100) and the
// cluster attributes (stored, not enforced).
GPUBROKER_SIM_API CUresult cuFuncSetAttribute(CUfunction function, CUfunction_attribute attribute, int value) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  auto found = d.functions.find(handle_id(function, Tag::kFunction));
  if (found == d.functions.end()) return CUDA_ERROR_INVALID_HANDLE;
  switch (attribute) {
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
      if (value < 0 || value > kSharedPerBlockOptin) return CUDA_ERROR_INVALID_VALUE;
      break;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
      if (value < -1 || value > 100) return CUDA_ERROR_INVALID_VALUE;
      break;
    case 11: case 12: case 13: case 14: case 15:  // cluster dimensions, non-portable size, policy
      if (value < 0) return CUDA_ERROR_INVALID_VALUE;
      break;
    default:
      return CUDA_ERROR_INVALID_VALUE;
  }
  found->second.attributes[static_cast<std::size_t>(attribute)] = value;
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuFuncSetCacheConfig(CUfunction function, CUfunc_cache config) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (config < 0 || config > kFuncCachePreferEqual) return CUDA_ERROR_INVALID_VALUE;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  auto found = d.functions.find(handle_id(function, Tag::kFunction));
  if (found == d.functions.end()) return CUDA_ERROR_INVALID_HANDLE;
  found->second.cache_config = config;
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuFuncGetParamInfo(CUfunction function, std::size_t index, std::size_t* offset,
                                              std::size_t* size) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (offset == nullptr || size == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Driver& d = driver();
  std::lock_guard lock(d.mutex);
  auto found = d.functions.find(handle_id(function, Tag::kFunction));
  if (found == d.functions.end()) return CUDA_ERROR_INVALID_HANDLE;
  const auto& layout = found->second.kernel->layout;
  if (index >= layout.size()) return CUDA_ERROR_INVALID_VALUE;
  *offset = layout[index].offset;
  *size = layout[index].size;
  return CUDA_SUCCESS;
}

// Runs, in stream order, the host implementation registered for the kernel's name; a kernel
// without one fails here, at the call, with CUDA_ERROR_LAUNCH_FAILED and a log line naming it.
GPUBROKER_SIM_API CUresult cuLaunchKernel(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                                          unsigned block_x, unsigned block_y, unsigned block_z, unsigned shared_bytes,
                                          CUstream handle, void** params, void** extra) {
  return guarded([&] {
    return launch_kernel(function, {grid_x, grid_y, grid_z}, {block_x, block_y, block_z}, shared_bytes, handle,
                         params, extra);
  });
}

// The attributes change how a GPU schedules the grid (cooperative residency, overlap with the
// previous kernel, priority), never what it computes: the sim runs the grid as cuLaunchKernel
// does. Attributes it does not know are refused rather than ignored.
GPUBROKER_SIM_API CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction function, void** params,
                                            void** extra) {
  return guarded([&] {
    if (config == nullptr || (config->numAttrs != 0 && config->attrs == nullptr)) return CUDA_ERROR_INVALID_VALUE;
    for (unsigned i = 0; i < config->numAttrs; ++i) {
      switch (config->attrs[i].id) {
        case CU_LAUNCH_ATTRIBUTE_IGNORE:
        case CU_LAUNCH_ATTRIBUTE_COOPERATIVE:
        case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION:
        case CU_LAUNCH_ATTRIBUTE_PRIORITY:
          break;
        default:
          return CUDA_ERROR_NOT_SUPPORTED;
      }
    }
    return launch_kernel(function, {config->gridDimX, config->gridDimY, config->gridDimZ},
                         {config->blockDimX, config->blockDimY, config->blockDimZ}, config->sharedMemBytes,
                         config->hStream, params, extra);
  });
}

// From the H100 limits, at 32 registers per thread (allocated per warp in units of 256) and the
// 1 KiB of shared memory the driver reserves per block.
GPUBROKER_SIM_API CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* blocks, CUfunction function,
                                                                                int block_size,
                                                                                std::size_t dynamic_shared,
                                                                                unsigned flags) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (blocks == nullptr || block_size <= 0 || flags > 1) return CUDA_ERROR_INVALID_VALUE;
  int max_shared = 0;
  int registers_per_thread = 32;
  {
    Driver& d = driver();
    std::lock_guard lock(d.mutex);
    auto found = d.functions.find(handle_id(function, Tag::kFunction));
    if (found == d.functions.end()) return CUDA_ERROR_INVALID_HANDLE;
    max_shared = found->second.attributes[CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES];
    registers_per_thread = found->second.attributes[CU_FUNC_ATTRIBUTE_NUM_REGS];
  }
  if (block_size > kMaxThreadsPerBlock || dynamic_shared > static_cast<std::size_t>(max_shared)) {
    *blocks = 0;
    return CUDA_SUCCESS;
  }
  const int warps = (block_size + 31) / 32;
  const int by_threads = kMaxThreadsPerMultiprocessor / (warps * 32);
  const int registers_per_warp = static_cast<int>(round_up(static_cast<std::size_t>(registers_per_thread) * 32, 256));
  const int by_registers = kRegistersPerMultiprocessor / (warps * registers_per_warp);
  const std::size_t shared_per_block = round_up(dynamic_shared + kReservedSharedPerBlock, 128);
  const int by_shared = static_cast<int>(kSharedPerMultiprocessor / shared_per_block);
  *blocks = std::min({kMaxBlocksPerMultiprocessor, by_threads, by_registers, by_shared});
  return CUDA_SUCCESS;
}

// ---- Errors ------------------------------------------------------------------------------------

// Both work before cuInit.
GPUBROKER_SIM_API CUresult cuGetErrorName(CUresult error, const char** name) {
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorText* text = error_text(error);
  *name = text == nullptr ? nullptr : text->name;
  return text == nullptr ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult cuGetErrorString(CUresult error, const char** description) {
  if (description == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorText* text = error_text(error);
  *description = text == nullptr ? nullptr : text->description;
  return text == nullptr ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}

// ---- The sim's own exports ----------------------------------------------------------------------------

GPUBROKER_SIM_API void gpubroker_sim_register_kernel(const char* mangled_name, GpubrokerSimKernel kernel) {
  if (mangled_name == nullptr || kernel == nullptr) return;
  try {
    register_kernel(mangled_name, kernel);
  } catch (...) {
    fmt::print(stderr, "sim: cannot register kernel '{}': out of memory\n", mangled_name);
  }
}

GPUBROKER_SIM_API CUresult gpubroker_sim_configure_devices(unsigned count) {
  if (count > static_cast<unsigned>(kMaxDevices)) return CUDA_ERROR_INVALID_VALUE;
  Driver& d = driver();
  // Pairs with the acquire load in initialize(), which cuInit runs once.
  if (d.initialized.load(std::memory_order_acquire)) return kIllegalState;
  d.configured_devices.store(static_cast<int>(count), std::memory_order_release);
  return CUDA_SUCCESS;
}

GPUBROKER_SIM_API CUresult gpubroker_sim_configure_kernels(const char* plugin_paths) {
  return configure_string(plugin_paths, &Driver::configured_plugins);
}

GPUBROKER_SIM_API CUresult gpubroker_sim_configure_discovery(const char* record_path) {
  return configure_string(record_path, &Driver::configured_discovery);
}

GPUBROKER_SIM_API void gpubroker_sim_counters(GpubrokerSimCounters* out) {
  if (out != nullptr) *out = counters().snapshot();
}

}  // extern "C"

// Every export has exactly the type the broker's table expects.
namespace gpubroker::cuda {
#define GPUBROKER_SIM_CHECK_EXPORT(member, symbol, type) \
  static_assert(std::is_same_v<decltype(::symbol), type>, #symbol " differs from driver_api.h");
GPUBROKER_DRIVER_API(GPUBROKER_SIM_CHECK_EXPORT)
#undef GPUBROKER_SIM_CHECK_EXPORT
}  // namespace gpubroker::cuda
static_assert(std::is_same_v<decltype(&::gpubroker_sim_counters), GpubrokerSimCountersFn>);
static_assert(std::is_same_v<decltype(&::gpubroker_sim_configure_devices), GpubrokerSimConfigureDevicesFn>);
static_assert(std::is_same_v<decltype(&::gpubroker_sim_configure_kernels), GpubrokerSimConfigureKernelsFn>);
static_assert(std::is_same_v<decltype(&::gpubroker_sim_configure_discovery), GpubrokerSimConfigureDiscoveryFn>);
