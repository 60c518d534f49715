// What kernels_from_cubin / kernels_from_ptx learn from one image, with the facts parse_module
// reports beside the kernels (internal to fatbin/).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "fatbin/fatbin.h"

namespace gpubroker::fatbin::detail {

struct ImageKernels {
  std::vector<KernelInfo> kernels;  // sorted by name
  bool has_writable_globals = false;
  std::uint32_t arch = 0;  // cubin e_flags bits 8-15, PTX `.target sm_XX`; 0 when unknown
};

[[nodiscard]] Result<ImageKernels> read_cubin(std::span<const std::byte> elf);
[[nodiscard]] Result<ImageKernels> read_ptx(std::string_view ptx);

}  // namespace gpubroker::fatbin::detail
