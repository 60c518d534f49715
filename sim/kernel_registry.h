// The host implementations of kernels, by mangled name (gpubroker/sim/kernel_plugin.h).
//
// Filled by plugins (loaded once, by the first cuInit) and by direct calls to
// gpubroker_sim_register_kernel; read by cuLaunchKernel. Any thread; a mutex guards the map and
// is never held while an implementation runs.
#pragma once

#include <string_view>

#include "gpubroker/sim/kernel_plugin.h"

namespace gpubroker::sim {

void register_kernel(std::string_view mangled_name, GpubrokerSimKernel kernel);

struct FoundKernel {
  GpubrokerSimKernel implementation = nullptr;  // nullptr when nothing is registered under the name
  // A plugin listed it in its gpubroker_sim_waiting_kernels: it waits for work of other streams, so
  // it never runs in the launching thread (Stream::submit_kernel).
  bool waits_for_other_streams = false;
};

// One lookup per launch: the implementation and whether it waits.
[[nodiscard]] FoundKernel find_kernel(std::string_view mangled_name);

// dlopens each path of the colon-separated list and calls its gpubroker_sim_plugin_init if it
// exports one. A plugin that fails to load is logged (one line to stderr) and skipped: its
// kernels then fail at launch, naming themselves.
void load_plugins(std::string_view colon_separated_paths);

}  // namespace gpubroker::sim
