// The broker's device layer: the only code that calls the CUDA driver (this file, and the
// contexts it hands out, device_context.h). It loads a driver library (the system's libcuda.so.1,
// or the project's sim driver), resolves the whole DriverTable with dlsym, initializes it, retains
// each device's primary context and snapshots every device's identity and attributes into a
// wire::DeviceTable that sessions hand to their clients.
//
// Per device (by broker ordinal, the index into devices()) it holds a DeviceContext: the primary
// context, with its completion poller. Sessions reach devices through a ContextGroup, one
// context per device: the primary contexts for everyone (Isolation::kNone), or contexts of
// their own per user id (Isolation::kUid), so that one user's kernels cannot reach another
// user's memory: a GPU gives each context its own page tables.
//
// Created once at broker start-up, on the main thread; read-only afterwards, so any thread may use
// it (the driver itself is thread-safe).
#pragma once

#include <boost/outcome/result.hpp>
#include <sys/types.h>

#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/device_context.h"
#include "broker/module_cache.h"
#include "gpubroker/wire/segments.h"

namespace gpubroker::broker {

enum class DriverChoice { kAuto, kCuda, kSim };
enum class Isolation { kUid, kNone };
enum class DriverKind { kCuda, kSim };

enum class DeviceErrc {
  kLibraryNotFound,  // dlopen failed
  kSymbolMissing,    // a DriverTable entry is not exported
  kInitFailed,       // cuInit or enumeration failed
  kNoDevice,         // the driver reports no device
  kContextFailed,    // a primary context could not be retained
};

struct DeviceError {
  DeviceErrc code;
  std::string detail;  // the library, symbol or CUresult involved
};

template <class T>
using DeviceResult = boost::outcome_v2::result<T, DeviceError, boost::outcome_v2::policy::terminate>;

const char* to_string(DriverKind kind);

// What the broker asks of the sim driver before it initializes it (ignored for the real driver).
struct SimSettings {
  std::optional<unsigned> devices;  // unset: the sim's own default (GPUBROKER_SIM_DEVICES, else 1)
  // Kernel plugins, colon-separated, "" for none; unset: GPUBROKER_SIM_KERNELS if the broker's
  // environment has it, else the plugins installed next to the sim library (default_sim_kernels).
  std::optional<std::string> kernels;
  std::string discover;  // the discovery record (gpubroker/sim/sim_driver.h); empty: off
};

class DeviceLayer;

// One context per device for the sessions of one isolation key (a user id, or everyone). A
// session holds its group; a user's group outlives its last session by the layer's linger time
// (a runner's discovery pass and the runner that follows it find it made), then the layer destroys
// its contexts. Any thread.
class ContextGroup {
 public:
  ContextGroup(const ContextGroup&) = delete;
  ContextGroup& operator=(const ContextGroup&) = delete;
  ~ContextGroup();

  [[nodiscard]] const DeviceContext& context(std::uint32_t ordinal) const { return *contexts_.at(ordinal); }
  // Whether these contexts are this group's own (a user's), not the primary ones everyone shares.
  [[nodiscard]] bool isolated() const { return !created_.empty(); }

 private:
  friend class DeviceLayer;
  explicit ContextGroup(const cuda::DriverTable& driver) : driver_(driver) {}

  const cuda::DriverTable& driver_;
  std::vector<const DeviceContext*> contexts_;     // by ordinal
  std::vector<std::unique_ptr<DeviceContext>> owned_;  // an isolated group's, by ordinal
  std::vector<cuda::CUcontext> created_;           // cuCtxCreate's, destroyed after owned_
};

class DeviceLayer {
 public:
  // kAuto: the real driver when it loads and reports a device, else the sim driver. `sim_library`
  // is the sim driver's path; empty means next to the broker's own binary.
  static DeviceResult<std::unique_ptr<DeviceLayer>> open(DriverChoice choice, const std::string& sim_library,
                                                         const SimSettings& sim = {});

  DeviceLayer(const DeviceLayer&) = delete;
  DeviceLayer& operator=(const DeviceLayer&) = delete;
  ~DeviceLayer();

  [[nodiscard]] DriverKind kind() const { return kind_; }
  [[nodiscard]] const std::string& library() const { return library_; }
  [[nodiscard]] const wire::DeviceTable& devices() const { return devices_; }
  // Device `ordinal`'s primary context: where the sessions' calls on that device run. cuBLAS is
  // the sim driver's own, or the system's libcublas.so.13 (else .12), and cuBLASLt likewise.
  [[nodiscard]] const DeviceContext& context(std::uint32_t ordinal) const { return *contexts_.at(ordinal); }

  // The contexts a session of user `uid` runs in: under kUid that user's own (made by its first
  // session), under kNone the primary ones. nullptr with the driver's error text when a context
  // cannot be made.
  [[nodiscard]] DeviceResult<std::shared_ptr<const ContextGroup>> contexts_for(Isolation isolation, uid_t uid) const;

  // Destroys the contexts of users whose sessions have all been gone for `linger_ns` (each call
  // notes which groups have no session now). Called from the broker's heartbeat; returns how many
  // users' contexts it destroyed.
  std::size_t release_idle_contexts(std::int64_t now_ns, std::int64_t linger_ns) const;

  // Modules shared between sessions (module_cache.h); the driver does the locking it needs.
  [[nodiscard]] ModuleCache& modules() const { return *modules_; }

 private:
  DeviceLayer() = default;
  static DeviceResult<std::unique_ptr<DeviceLayer>> load(const std::string& library, DriverKind kind,
                                                         const SimSettings& sim);
  DeviceResult<void> configure_sim(const SimSettings& sim);
  DeviceResult<void> enumerate();
  void load_blas();

  void* handle_ = nullptr;
  std::string library_;
  DriverKind kind_ = DriverKind::kSim;
  DriverTables tables_;
  wire::DeviceTable devices_{};
  std::vector<cuda::CUcontext> primary_contexts_;  // retained by enumerate(), by ordinal
  std::vector<std::unique_ptr<DeviceContext>> contexts_;  // by ordinal
  std::shared_ptr<const ContextGroup> shared_group_;       // the primary contexts, for kNone
  struct UserGroup {
    std::shared_ptr<const ContextGroup> group;
    std::int64_t idle_since_ns = 0;  // 0: a session holds it (as of the last release_idle_contexts)
  };
  mutable std::mutex groups_lock_;
  mutable std::map<uid_t, UserGroup> user_groups_;  // guarded by groups_lock_
  std::unique_ptr<ModuleCache> modules_;
};

// The default path of the sim driver for a broker binary at `broker_path`: the build tree's
// sim/ folder, else the installed lib/gpubroker/ folder.
std::string default_sim_library();

// The kernel plugins a sim broker loads when told nothing: the ggml kernels beside the sim library
// (installed) or in its ggml/ folder (the build tree); "" when neither exists.
std::string default_sim_kernels(const std::string& sim_library);

}  // namespace gpubroker::broker
