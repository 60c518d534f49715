// What cuModuleLoadData learns from an image: its kernels (names and parameter layouts, from the
// project's fatbin parser) and its device variables.
//
// Accepts what cuModuleLoadData accepts: a fatbin container (magic 0xBA55ED50), a bare cubin
// (ELF) or NUL-terminated PTX text. The image's size is not given, so it is computed, as the
// driver must: from the container header, from the ELF headers (the furthest of the header
// tables and of the sections' data), or up to the PTX text's NUL. Pure: any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/outcome/result.hpp>

#include "gpubroker/cuda/driver_api.h"
#include "sim/operations.h"

namespace gpubroker::sim {

// A __device__ or __constant__ variable of the chosen cubin. Initial values are known only where
// the variable fills its section alone (the parser's ELF reader gives no symbol offsets); other
// variables start zeroed.
struct GlobalVariable {
  std::string name;
  std::uint64_t bytes = 0;
  std::vector<unsigned char> initial;  // empty: zeroed
};

struct ModuleImage {
  std::vector<std::shared_ptr<const KernelRecord>> kernels;  // sorted by name
  std::vector<GlobalVariable> globals;
};

struct ImageError {
  cuda::CUresult code;  // INVALID_IMAGE, INVALID_PTX, NO_BINARY_FOR_GPU, OUT_OF_MEMORY
  std::string detail;   // for the log line
};

template <class T>
using ImageResult = boost::outcome_v2::result<T, ImageError, boost::outcome_v2::policy::terminate>;

[[nodiscard]] ImageResult<ModuleImage> read_module_image(const void* image, std::uint32_t device_arch);

}  // namespace gpubroker::sim
