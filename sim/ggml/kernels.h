// Host implementations of the CUDA kernels that llama.cpp's prebuilt CUDA 12 build (the PyPI wheel
// cyllama-cuda12 0.2.18: llama.cpp b9190, ggml 0.12.0) launches for a llama model with F16 weights,
// written from ggml's documented semantics with its public source (ggml/src/ggml-cuda/*.cu at that
// version) as the reference for what each kernel computes. The sim loads them as a kernel plugin
// (plugin.cc; gpubroker/sim/kernel_plugin.h), so that a sim broker runs that build's whole token
// loop: prompt processing and decoding, with ggml's CUDA graphs on or off.
//
// The names are the wheel's mangled names (ggml's file-local operators carry the hash of the
// translation unit that nvcc gave them), so the table is tied to that build: another build of ggml
// needs its names looked up again, which the sim's discovery mode does
// (gpubroker/sim/sim_driver.h, GPUBROKER_SIM_DISCOVER).
//
// Each family file gives its instances; kernels() is all of them. A kernel not in the table fails
// its launch in the sim, naming itself; an instance in the table fails, naming the case, on a
// launch shape or parameter it does not implement.
#pragma once

#include <string_view>
#include <vector>

#include "sim/ggml/launch.h"

namespace gpubroker::sim::ggml {

std::vector<KernelEntry> norm_kernels();         // rms_norm_f32
std::vector<KernelEntry> mul_mat_vec_kernels();  // mul_mat_vec_f
std::vector<KernelEntry> rope_kernels();         // rope_norm
std::vector<KernelEntry> rows_kernels();         // k_get_rows_float, k_set_rows
std::vector<KernelEntry> copy_kernels();         // cpy_scalar, convert_unary
std::vector<KernelEntry> softmax_kernels();      // soft_max_f32
std::vector<KernelEntry> binary_kernels();       // k_bin_bcast
std::vector<KernelEntry> unary_kernels();        // unary_gated_op_kernel
std::vector<KernelEntry> matmul_kernels();       // k_compute_batched_ptrs

// Every kernel of every family.
std::vector<KernelEntry> kernels();

// The implementation registered under `mangled_name`, or nullptr.
GpubrokerSimKernel find_kernel(std::string_view mangled_name);

}  // namespace gpubroker::sim::ggml
