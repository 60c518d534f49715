// The sim's discovery mode: which kernels a run launches, so that the next runner's kernel list is
// one command away (GPUBROKER_SIM_DISCOVER=FILE, or gpubroker_sim_configure_discovery; gpu-broker
// --sim-discover=FILE).
//
// While it is on, cuLaunchKernel appends one line to the record file the first time each kernel
// (by mangled name) is launched in the process, with that launch's grid, block, dynamic shared
// memory, parameter sizes and whether a host implementation is registered; and a kernel without
// one runs as a no-op instead of failing its launch, so that the run goes on to its next kernel.
// What such a run computes is meaningless; only the record is its result.
//
// The line is tab-separated, one write(2) to a file opened O_APPEND (so that processes and threads
// sharing the file never interleave within a line):
//   kernel NAME grid=X,Y,Z block=X,Y,Z shared=BYTES params=S0,S1,... implemented=yes|no DEMANGLED
//
// Threads: any. A mutex guards the set of names already recorded; it is taken only in discovery
// mode, never while a kernel runs.
#pragma once

#include <string_view>

#include "gpubroker/sim/kernel_plugin.h"
#include "sim/operations.h"

namespace gpubroker::sim {

// Turns discovery on, recording to `record_path` (created if absent, appended to). Called once,
// by the first cuInit. False, with one line on stderr, when the file cannot be opened.
[[nodiscard]] bool start_discovery(std::string_view record_path);

[[nodiscard]] bool discovery_enabled();

// Records the launch if its kernel was not recorded yet. `implemented`: a host implementation runs.
void record_launch(const KernelRecord& kernel, const GpubrokerSimDim3& grid, const GpubrokerSimDim3& block,
                   unsigned shared_bytes, bool implemented);

// What a kernel without a host implementation runs in discovery mode: nothing.
int no_op_kernel(const GpubrokerSimLaunch* launch);

}  // namespace gpubroker::sim
