// A session's modules, their functions and global variables, and kernel launches.
//
// Modules come from the device layer's cache (module_cache.h): identical images without writable
// globals are shared between sessions, so a module's functions may be every holder's, and what a
// session may change about them is limited accordingly. A module's global variables count as the
// session's memory while it holds the module.
//
// Dispatcher thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/call.h"
#include "broker/module_cache.h"
#include "broker/owned.h"

namespace gpubroker::broker {

class DeviceSession;

class SessionModules {
 public:
  explicit SessionModules(DeviceSession& session);

  [[nodiscard]] bool owns_global(std::uint64_t pointer, std::uint64_t bytes) const;
  // The serial of the global variable holding all of [pointer, pointer + bytes), or 0.
  [[nodiscard]] std::uint64_t serial_of(std::uint64_t pointer, std::uint64_t bytes) const;
  // The device of the global variable holding `pointer`, if one does.
  [[nodiscard]] std::optional<std::uint32_t> device_of(std::uint64_t pointer) const;

  // ---- Handlers (rows of area `modules`) ----
  Outcome<wire::NoReply> load(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> get_function(CallContext& call, const wire::FunctionRequest& request);
  Outcome<wire::GlobalResult> get_global(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> unload(CallContext& call, const wire::HandleRequest& request);
  Outcome<wire::NoReply> launch(CallContext& call, const wire::LaunchPayload& payload);
  Outcome<wire::NoReply> launch_staged(CallContext& call, const wire::LaunchRequest& request);
  Outcome<wire::FuncAttributesResult> get_attributes(CallContext& call, const wire::FuncAttributeRequest& request);
  Outcome<wire::NoReply> set_attribute(CallContext& call, const wire::FuncAttributeRequest& request);
  Outcome<wire::NoReply> set_cache_config(CallContext& call, const wire::FuncAttributeRequest& request);
  Outcome<std::int32_t> occupancy(CallContext& call, const wire::OccupancyRequest& request);

 private:
  // The cache unloads a module when its last holder lets go; the image's bytes, which the broker
  // keeps while the module lives, count against this session's host memory while it holds it.
  struct KeepModule {
    DeviceSession* session;
    std::uint64_t image_bytes;
    int operator()(const std::shared_ptr<const ModuleCache::Module>&) const;
  };
  using HeldModule = Owned<std::shared_ptr<const ModuleCache::Module>, KeepModule>;
  struct Function {
    cuda::CUfunction handle;
    std::uint64_t module;            // the id in modules_
    const DeviceContext* context;    // its module's: the launch path needs it without a second lookup
    std::string name;                // mangled, for the report of a failed launch
  };
  struct Global {  // a module's global variable: the session's memory while the module lives
    std::uint64_t bytes;
    std::uint64_t module;
    std::uint64_t serial;  // DeviceSession::new_memory_serial()
  };
  // Staged bytes are taken whole (an image, a name, a parameter block), then checked. The buffer
  // grows as the bytes arrive, never ahead of them, and counts against the session's host memory
  // while it is received. An object the session may not hold is drained from the pipe unkept: the
  // call then fails with CUDA_ERROR_OUT_OF_MEMORY (an empty buffer and `refused`).
  struct Received {
    std::vector<std::byte> bytes;
    bool refused = false;
  };
  ipc::Result<Received> receive_all(CallContext& call);
  Outcome<wire::NoReply> launch_with(CallContext& call, const wire::LaunchRequest& launch,
                                     std::span<const std::byte> params);
  cuda::CUresult check_layout(const ipc::ServerSession& session, const ModuleCache::Module& module, const char* name,
                              cuda::CUfunction function) const;
  static cuda::CUresult launch_with_attributes(const DeviceContext& context, const wire::LaunchRequest& launch,
                                               cuda::CUfunction function, cuda::CUstream stream, void** extra);
  Lookup<const Function*> function_for(std::uint64_t id) const;

  DeviceSession& session_;
  std::unordered_map<std::uint64_t, HeldModule> modules_;
  std::unordered_map<std::uint64_t, Function> functions_;
  std::map<std::uint64_t, Global> globals_;  // by device address
  // The largest image, name or parameter block a session may stage in one request.
  static constexpr std::uint64_t kMaxStagedObjectBytes = 1ull << 30;
};

}  // namespace gpubroker::broker
