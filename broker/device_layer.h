// The broker's device layer: the only code that calls the CUDA driver. It loads a driver library
// (the system's libcuda.so.1, or the project's sim driver), resolves the whole DriverTable with
// dlsym, initializes it, retains each device's primary context and snapshots every device's
// identity and attributes into a wire::DeviceTable that sessions hand to their clients.
//
// Per device (by broker ordinal, the index into devices()) it holds the primary context, a
// completion poller whose thread has that context current, and the identity in devices().
//
// Created once at broker start-up, on the main thread; read-only afterwards, so any thread may use
// it (the driver itself is thread-safe).
#pragma once

#include <boost/outcome/result.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/cublaslt_abi.h"
#include "gpubroker/cuda/driver_api.h"
#include "broker/completion_poller.h"
#include "broker/module_cache.h"
#include "gpubroker/wire/segments.h"

namespace gpubroker::broker {

enum class DriverChoice { kAuto, kCuda, kSim };
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

class DeviceLayer {
 public:
  // kAuto: the real driver when it loads and reports a device, else the sim driver. `sim_library`
  // is the sim driver's path; empty means next to the broker's own binary.
  static DeviceResult<std::unique_ptr<DeviceLayer>> open(DriverChoice choice, const std::string& sim_library,
                                                         const SimSettings& sim = {});

  DeviceLayer(const DeviceLayer&) = delete;
  DeviceLayer& operator=(const DeviceLayer&) = delete;
  ~DeviceLayer();

  [[nodiscard]] const cuda::DriverTable& driver() const { return driver_; }
  // The cuBLAS table: the sim driver's own, or the system's libcublas.so.13 (else .12); nullptr
  // when no cuBLAS library is usable (cuBLAS requests then fail with NOT_INITIALIZED).
  [[nodiscard]] const cuda::CublasTable* blas() const { return blas_loaded_ ? &blas_ : nullptr; }
  // The cuBLASLt table: the sim driver's own, or the system's libcublasLt.so.13 (else .12); nullptr
  // when none is usable (cuBLASLt matmuls then fail with NOT_SUPPORTED).
  [[nodiscard]] const cuda::lt::CublasLtTable* blas_lt() const { return blas_lt_loaded_ ? &blas_lt_ : nullptr; }
  [[nodiscard]] DriverKind kind() const { return kind_; }
  [[nodiscard]] const std::string& library() const { return library_; }
  [[nodiscard]] const wire::DeviceTable& devices() const { return devices_; }
  [[nodiscard]] cuda::CUcontext context(std::uint32_t ordinal) const { return contexts_.at(ordinal); }

  // Modules shared between sessions (module_cache.h); the driver does the locking it needs.
  [[nodiscard]] ModuleCache& modules() const { return *modules_; }

  // Completes the requests that wait for device `ordinal`'s work (completion_poller.h). Its
  // watch() must be called with that device's context current.
  [[nodiscard]] CompletionPoller& completions(std::uint32_t ordinal) const { return *completions_.at(ordinal); }

  // Makes device `ordinal`'s primary context current on the calling thread. Cheap; call it at the
  // start of every thread that calls the driver, and whenever the thread turns to another device.
  void bind_thread(std::uint32_t ordinal) const;

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
  cuda::DriverTable driver_{};
  cuda::CublasTable blas_{};
  bool blas_loaded_ = false;
  cuda::lt::CublasLtTable blas_lt_{};
  bool blas_lt_loaded_ = false;
  wire::DeviceTable devices_{};
  std::vector<cuda::CUcontext> contexts_;
  std::unique_ptr<ModuleCache> modules_;
  std::vector<std::unique_ptr<CompletionPoller>> completions_;  // by ordinal
};

// The default path of the sim driver for a broker binary at `broker_path`: the build tree's
// sim/ folder, else the installed lib/gpubroker/ folder.
std::string default_sim_library();

// The kernel plugins a sim broker loads when told nothing: the ggml kernels beside the sim library
// (installed) or in its ggml/ folder (the build tree); "" when neither exists.
std::string default_sim_kernels(const std::string& sim_library);

}  // namespace gpubroker::broker
