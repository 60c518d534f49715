// Modules, libraries, functions and launches of the driver API.
//
// A module is loaded into the current context's device: its image (a fatbin, a cubin or PTX text,
// whose length the driver API is not told and the shim finds from its headers) goes to the broker,
// which proves it well-formed before the driver sees it, and the shim parses it too, for its
// kernels' parameter layouts (a launch's kernelParams carry no sizes). A CUfunction and a CUkernel
// are the shim's record of the function; a CUlibrary is a module loaded on the current device.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "fatbin/fatbin.h"
#include "shim/abi/unsupported.h"
#include "shim/driver/driver_state.h"

using namespace gpubroker;
using namespace gpubroker::shim::drv;
using cuda::CUdeviceptr;
using cuda::CUfunction;
using cuda::CUmodule;
using cuda::CUstream;
using gpubroker::shim::Connection;
namespace ops = gpubroker::shim::ops;

namespace {

constexpr CUresult kInvalidPtx = cuda::CUDA_ERROR_INVALID_PTX;
constexpr CUresult kNoBinaryForGpu = cuda::CUDA_ERROR_NO_BINARY_FOR_GPU;

struct Module;

struct Function {
  Module* module;
  std::uint64_t id;
  const fatbin::KernelInfo* layout;  // into module->kernels
};

struct Module {
  int device;
  std::uint64_t id;
  std::vector<fatbin::KernelInfo> kernels;
  std::vector<std::unique_ptr<Function>> functions;  // resolved so far; each once
};

std::mutex g_lock;  // guards the two sets and every Module's functions
// Never destroyed (calls may come during exit), and so neither are the modules they hold.
std::unordered_set<Module*>& g_modules = *new std::unordered_set<Module*>();
std::unordered_set<Function*>& g_functions = *new std::unordered_set<Function*>();

Module* find_module(CUmodule handle) {
  auto* m = reinterpret_cast<Module*>(handle);
  return g_modules.count(m) != 0 ? m : nullptr;
}

Function* find_function(const void* handle) {
  auto* f = static_cast<Function*>(const_cast<void*>(handle));
  return g_functions.count(f) != 0 ? f : nullptr;
}

std::uint32_t read32(const std::byte* p) {
  std::uint32_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::uint64_t read64(const std::byte* p) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::uint16_t read16(const std::byte* p) {
  std::uint16_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The bytes of an image the program passes by pointer alone: a fatbin (or the wrapper nvcc emits
// around one), a 64-bit ELF cubin, or NUL-terminated PTX text. Its length comes from its headers;
// the broker's parser then proves the whole image well-formed.
std::span<const std::byte> image_bytes(const void* image) {
  constexpr std::uint32_t kWrapperMagic = 0x466243B1;
  constexpr std::uint64_t kMaxImage = fatbin::kMaxUncompressedSize;
  const auto* p = static_cast<const std::byte*>(image);
  if (read32(p) == kWrapperMagic) p = reinterpret_cast<const std::byte*>(read64(p + 8));  // __fatBinC_Wrapper_t::data
  if (read32(p) == fatbin::kContainerMagic) {
    const std::uint64_t fat_size = read64(p + 8);
    if (fat_size > kMaxImage) return {};
    return {p, fatbin::kContainerHeaderSize + fat_size};
  }
  if (std::memcmp(p, "\x7f" "ELF", 4) == 0) {
    if (static_cast<unsigned char>(p[4]) != 2) return {};  // ELFCLASS64 only, as CUDA's cubins
    // The image ends with whichever of its section and program header tables ends last.
    const std::uint64_t sections = read64(p + 0x28) + std::uint64_t{read16(p + 0x3c)} * read16(p + 0x3a);
    const std::uint64_t segments = read64(p + 0x20) + std::uint64_t{read16(p + 0x38)} * read16(p + 0x36);
    const std::uint64_t end = std::max({sections, segments, std::uint64_t{64}});
    return end > kMaxImage ? std::span<const std::byte>{} : std::span<const std::byte>{p, end};
  }
  return {p, std::strlen(reinterpret_cast<const char*>(p))};
}

std::uint32_t device_arch(const wire::DeviceRecord& d) {
  return static_cast<std::uint32_t>(d.attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR] * 10 +
                                    d.attributes[cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR]);
}

CUresult load(CUmodule* module, const void* image) {
  if (module == nullptr || image == nullptr) return kInvalidValue;
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return r;
  const std::span<const std::byte> bytes = image_bytes(image);
  if (bytes.empty()) return kInvalidImage;
  const int device = Connection::current_device();
  auto parsed = fatbin::parse_module(bytes, device_arch(c->device(static_cast<std::uint32_t>(device))));
  if (!parsed) {
    if (parsed.error().code == fatbin::FatbinErrc::kNoCompatibleImage) return kNoBinaryForGpu;
    return bytes.size() > 0 && static_cast<char>(bytes[0]) != '\x7f' && read32(bytes.data()) != fatbin::kContainerMagic
               ? kInvalidPtx
               : kInvalidImage;
  }
  auto loaded = std::make_unique<Module>(Module{device, shim::new_object_id(), std::move(parsed.value().kernels), {}});
  if (const CUresult r = ops::request<wire::RequestKind::kModuleLoad>(*c, wire::HandleRequest{loaded->id}, bytes);
      r != kSuccess) {
    return r;
  }
  std::lock_guard guard(g_lock);
  *module = reinterpret_cast<CUmodule>(loaded.get());
  g_modules.insert(loaded.release());
  return kSuccess;
}

CUresult get_function(Function*& function, CUmodule handle, const char* name) {
  if (name == nullptr) return kInvalidValue;
  Connection* c = Connection::get();
  if (c == nullptr) return kNotInitialized;
  std::lock_guard guard(g_lock);
  Module* m = find_module(handle);
  if (m == nullptr) return kInvalidHandle;
  const fatbin::KernelInfo* layout = nullptr;
  for (const fatbin::KernelInfo& k : m->kernels) {
    if (k.name == name) layout = &k;
  }
  if (layout == nullptr) return kNotFound;
  for (const auto& f : m->functions) {
    if (f->layout == layout) {
      function = f.get();
      return kSuccess;
    }
  }
  const OnDevice on(m->device);
  auto made = std::make_unique<Function>(Function{m, shim::new_object_id(), layout});
  const std::span<const std::byte> name_bytes(reinterpret_cast<const std::byte*>(name), std::strlen(name));
  const CUresult r =
      ops::request<wire::RequestKind::kModuleGetFunction>(*c, wire::FunctionRequest{m->id, made->id}, name_bytes);
  if (r != kSuccess) return r;
  function = made.get();
  g_functions.insert(made.get());
  m->functions.push_back(std::move(made));
  return kSuccess;
}

CUresult unload(CUmodule handle) {
  Connection* c = Connection::get();
  if (c == nullptr) return kNotInitialized;
  std::unique_ptr<Module> m;
  {
    std::lock_guard guard(g_lock);
    Module* found = find_module(handle);
    if (found == nullptr) return kInvalidHandle;
    g_modules.erase(found);
    for (const auto& f : found->functions) g_functions.erase(f.get());
    m.reset(found);
  }
  const OnDevice on(m->device);
  return ops::request<wire::RequestKind::kModuleUnload>(*c, wire::HandleRequest{m->id});
}

// cuLaunchKernel's `extra`: CU_LAUNCH_PARAM_BUFFER_POINTER, the packed block, and
// CU_LAUNCH_PARAM_BUFFER_SIZE, its size, up to CU_LAUNCH_PARAM_END.
CUresult packed_from_extra(void** extra, const void*& buffer, std::size_t& bytes) {
  const auto kEnd = reinterpret_cast<void*>(0x00), kBufferPointer = reinterpret_cast<void*>(0x01),
             kBufferSize = reinterpret_cast<void*>(0x02), kEndAsInt = reinterpret_cast<void*>(0x03);
  buffer = nullptr;
  const std::size_t* size = nullptr;
  for (std::size_t i = 0; extra[i] != kEnd && extra[i] != kEndAsInt; i += 2) {
    if (extra[i] == kBufferPointer) {
      buffer = extra[i + 1];
    } else if (extra[i] == kBufferSize) {
      size = static_cast<const std::size_t*>(extra[i + 1]);
    } else {
      return kInvalidValue;
    }
  }
  if (buffer == nullptr || size == nullptr) return kInvalidValue;
  bytes = *size;
  return kSuccess;
}

CUresult launch(CUfunction handle, const unsigned grid[3], const unsigned block[3], unsigned shared_bytes, CUstream stream,
                void** params, void** extra, std::uint8_t flags) {
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return r;
  Function* f = nullptr;
  {
    std::lock_guard guard(g_lock);
    f = find_function(handle);
  }
  if (f == nullptr) return kInvalidHandle;
  if (f->module->device != Connection::current_device()) return cuda::CUDA_ERROR_INVALID_CONTEXT;
  if (shared_bytes >= (1u << 24)) return kInvalidValue;  // beyond any GPU's shared memory
  const fatbin::KernelInfo& layout = *f->layout;
  if ((params != nullptr) == (extra != nullptr) && !layout.params.empty()) return kInvalidValue;
  std::vector<std::byte> block_bytes(layout.param_bytes);
  if (params != nullptr) {
    for (std::size_t i = 0; i < layout.params.size(); ++i) {
      if (params[i] == nullptr) return kInvalidValue;
      std::memcpy(block_bytes.data() + layout.params[i].offset, params[i], layout.params[i].size);
    }
  } else if (extra != nullptr) {
    const void* buffer = nullptr;
    std::size_t bytes = 0;
    if (const CUresult r = packed_from_extra(extra, buffer, bytes); r != kSuccess) return r;
    if (bytes != layout.param_bytes) return kInvalidValue;
    std::memcpy(block_bytes.data(), buffer, bytes);
  }
  const wire::LaunchRequest header{f->id,
                                   {grid[0], grid[1], grid[2]},
                                   {block[0], block[1], block[2]},
                                   shared_bytes,
                                   flags,
                                   layout.param_bytes,
                                   stream_id(stream)};
  return ops::launch(*c, header, block_bytes);
}

CUresult read_file(const char* path, std::vector<char>& contents) {
  if (path == nullptr) return kInvalidValue;
  std::ifstream in(path, std::ios::binary);
  if (!in) return 301;  // CUDA_ERROR_FILE_NOT_FOUND
  contents.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  contents.push_back('\0');  // PTX text is read up to its terminator
  return kSuccess;
}

CUresult load_file(CUmodule* module, const char* path) {
  std::vector<char> contents;
  if (const CUresult r = read_file(path, contents); r != kSuccess) return r;
  return load(module, contents.data());
}

// The broker's id of a function handle the program holds.
CUresult function_id(CUfunction handle, std::uint64_t& id) {
  std::lock_guard guard(g_lock);
  const Function* f = find_function(handle);
  if (f == nullptr) return kInvalidHandle;
  id = f->id;
  return kSuccess;
}

}  // namespace

extern "C" {

// ---- modules --------------------------------------------------------------------------------

CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  GPUBROKER_DRIVER_ENTRY();
  return result(load(module, image));
}

// The JIT options tune PTX compilation and logging; the broker's driver compiles with its own.
CUresult cuModuleLoadDataEx(CUmodule* module, const void* image, unsigned /*count*/, int* /*options*/, void** /*values*/) {
  GPUBROKER_DRIVER_ENTRY();
  return result(load(module, image));
}

CUresult cuModuleLoadFatBinary(CUmodule* module, const void* fatbin) {
  GPUBROKER_DRIVER_ENTRY();
  return result(load(module, fatbin));
}

CUresult cuModuleLoad(CUmodule* module, const char* path) {
  GPUBROKER_DRIVER_ENTRY();
  return result(load_file(module, path));
}

CUresult cuModuleUnload(CUmodule module) {
  GPUBROKER_DRIVER_ENTRY();
  return result(unload(module));
}

CUresult cuModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
  GPUBROKER_DRIVER_ENTRY();
  if (function == nullptr) return result(kInvalidValue);
  Function* f = nullptr;
  const CUresult r = get_function(f, module, name);
  if (r == kSuccess) *function = reinterpret_cast<CUfunction>(f);
  return result(r);
}

CUresult cuModuleGetGlobal_v2(CUdeviceptr* pointer, std::size_t* bytes, CUmodule module, const char* name) {
  GPUBROKER_DRIVER_ENTRY();
  if (name == nullptr) return result(kInvalidValue);
  Connection* c = Connection::get();
  if (c == nullptr) return result(kNotInitialized);
  std::uint64_t id = 0;
  int device = 0;
  {
    std::lock_guard guard(g_lock);
    const Module* m = find_module(module);
    if (m == nullptr) return result(kInvalidHandle);
    id = m->id;
    device = m->device;
  }
  wire::GlobalResult global{};
  const std::span<const std::byte> name_bytes(reinterpret_cast<const std::byte*>(name), std::strlen(name));
  CUresult r = kSuccess;
  {
    const OnDevice on(device);
    r = ops::request<wire::RequestKind::kModuleGetGlobal>(*c, wire::HandleRequest{id}, name_bytes, &global);
  }
  if (r != kSuccess) return result(r);
  if (pointer != nullptr) *pointer = global.pointer;
  if (bytes != nullptr) *bytes = global.bytes;
  return result(kSuccess);
}

// ---- libraries (CUDA 12's context-independent modules; here loaded on the current device) ----

CUresult cuLibraryLoadData(CUmodule* library, const void* code, void* /*jit_options*/, void** /*jit_values*/,
                           unsigned /*jit_count*/, void* /*library_options*/, void** /*library_values*/,
                           unsigned /*library_count*/) {
  GPUBROKER_DRIVER_ENTRY();
  return result(load(library, code));
}

CUresult cuLibraryLoadFromFile(CUmodule* library, const char* path, void*, void**, unsigned, void*, void**, unsigned) {
  GPUBROKER_DRIVER_ENTRY();
  return result(load_file(library, path));
}

CUresult cuLibraryUnload(CUmodule library) {
  GPUBROKER_DRIVER_ENTRY();
  return result(unload(library));
}

CUresult cuLibraryGetModule(CUmodule* module, CUmodule library) {
  GPUBROKER_DRIVER_ENTRY();
  if (module == nullptr) return result(kInvalidValue);
  std::lock_guard guard(g_lock);
  if (find_module(library) == nullptr) return result(kInvalidHandle);
  *module = library;
  return result(kSuccess);
}

CUresult cuLibraryGetKernel(CUfunction* kernel, CUmodule library, const char* name) {
  GPUBROKER_DRIVER_ENTRY();
  return result(cuModuleGetFunction(kernel, library, name));
}

CUresult cuKernelGetFunction(CUfunction* function, CUfunction kernel) {
  GPUBROKER_DRIVER_ENTRY();
  if (function == nullptr) return result(kInvalidValue);
  std::lock_guard guard(g_lock);
  if (find_function(kernel) == nullptr) return result(kInvalidHandle);
  *function = kernel;
  return result(kSuccess);
}

// ---- functions ------------------------------------------------------------------------------

CUresult cuFuncGetAttribute(int* value, int attribute, CUfunction function) {
  GPUBROKER_DRIVER_ENTRY();
  if (value == nullptr || attribute < 0 || attribute >= 16) return result(kInvalidValue);
  Connection* c = Connection::get();
  if (c == nullptr) return result(kNotInitialized);
  std::uint64_t id = 0;
  if (const CUresult r = function_id(function, id); r != kSuccess) return result(r);
  wire::FuncAttributesResult attributes{};
  const CUresult r =
      ops::request<wire::RequestKind::kFuncGetAttributes>(*c, wire::FuncAttributeRequest{id, 0, 0}, &attributes);
  if (r == kSuccess) *value = attributes.values[attribute];  // indexed by CUfunction_attribute
  return result(r);
}

CUresult cuFuncSetAttribute(CUfunction function, int attribute, int value) {
  GPUBROKER_DRIVER_ENTRY();
  Connection* c = Connection::get();
  if (c == nullptr) return result(kNotInitialized);
  std::uint64_t id = 0;
  if (const CUresult r = function_id(function, id); r != kSuccess) return result(r);
  return result(ops::request<wire::RequestKind::kFuncSetAttribute>(*c, wire::FuncAttributeRequest{id, attribute, value}));
}

CUresult cuFuncSetCacheConfig(CUfunction function, int config) {
  GPUBROKER_DRIVER_ENTRY();
  Connection* c = Connection::get();
  if (c == nullptr) return result(kNotInitialized);
  std::uint64_t id = 0;
  if (const CUresult r = function_id(function, id); r != kSuccess) return result(r);
  return result(ops::request<wire::RequestKind::kFuncSetCacheConfig>(*c, wire::FuncAttributeRequest{id, 0, config}));
}

CUresult cuFuncGetParamInfo(CUfunction function, std::size_t index, std::size_t* offset, std::size_t* bytes) {
  GPUBROKER_DRIVER_ENTRY();
  std::lock_guard guard(g_lock);
  const Function* f = find_function(function);
  if (f == nullptr) return result(kInvalidHandle);
  if (index >= f->layout->params.size()) return result(kInvalidValue);
  if (offset != nullptr) *offset = f->layout->params[index].offset;
  if (bytes != nullptr) *bytes = f->layout->params[index].size;
  return result(kSuccess);
}

CUresult cuFuncGetName(const char** name, CUfunction function) {
  GPUBROKER_DRIVER_ENTRY();
  if (name == nullptr) return result(kInvalidValue);
  std::lock_guard guard(g_lock);
  const Function* f = find_function(function);
  if (f == nullptr) return result(kInvalidHandle);
  *name = f->layout->name.c_str();
  return result(kSuccess);
}

CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, CUfunction function, int block_size,
                                                     std::size_t shared_bytes) {
  GPUBROKER_DRIVER_ENTRY();
  if (blocks == nullptr || block_size <= 0) return result(kInvalidValue);
  Connection* c = nullptr;
  if (const CUresult r = enter(c); r != kSuccess) return result(r);
  std::uint64_t id = 0;
  if (const CUresult r = function_id(function, id); r != kSuccess) return result(r);
  std::int32_t reply = 0;
  const CUresult r = ops::request<wire::RequestKind::kOccupancy>(
      *c, wire::OccupancyRequest{id, block_size, 0, shared_bytes}, &reply);
  if (r == kSuccess) *blocks = reply;
  return result(r);
}

// ---- launches -------------------------------------------------------------------------------

CUresult cuLaunchKernel(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z, unsigned block_x,
                        unsigned block_y, unsigned block_z, unsigned shared_bytes, CUstream stream, void** params,
                        void** extra) {
  GPUBROKER_DRIVER_ENTRY();
  const unsigned grid[3] = {grid_x, grid_y, grid_z}, block[3] = {block_x, block_y, block_z};
  return result(launch(function, grid, block, shared_bytes, stream, params, extra, 0));
}

CUresult cuLaunchCooperativeKernel(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                                   unsigned block_x, unsigned block_y, unsigned block_z, unsigned shared_bytes,
                                   CUstream stream, void** params) {
  GPUBROKER_DRIVER_ENTRY();
  const unsigned grid[3] = {grid_x, grid_y, grid_z}, block[3] = {block_x, block_y, block_z};
  return result(launch(function, grid, block, shared_bytes, stream, params, nullptr, wire::kLaunchCooperative));
}

// The attributes the runtime shim's cudaLaunchKernelExC carries: cooperative, programmatic stream
// serialization, and priority (scheduling only); any other is refused, by name, once.
CUresult cuLaunchKernelEx(const cuda::CUlaunchConfig* config, CUfunction function, void** params, void** extra) {
  GPUBROKER_DRIVER_ENTRY();
  if (config == nullptr || (config->numAttrs != 0 && config->attrs == nullptr)) return result(kInvalidValue);
  std::uint8_t flags = 0;
  for (unsigned i = 0; i < config->numAttrs; ++i) {
    if (!ops::add_launch_attribute(config->attrs[i].id, config->attrs[i].value.cooperative, flags)) {
      log_unsupported("cuLaunchKernelEx with a launch attribute other than cooperative, programmatic stream "
                      "serialization or priority");
      return result(kNotSupported);
    }
  }
  const unsigned grid[3] = {config->gridDimX, config->gridDimY, config->gridDimZ};
  const unsigned block[3] = {config->blockDimX, config->blockDimY, config->blockDimZ};
  return result(launch(function, grid, block, config->sharedMemBytes, config->hStream, params, extra, flags));
}

}  // extern "C"
