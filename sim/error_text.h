// The names and descriptions of CUDA 13.0's CUresult values, for cuGetErrorName and
// cuGetErrorString. Static strings; any thread.
#pragma once

#include "gpubroker/cuda/driver_api.h"

namespace gpubroker::sim {

struct ErrorText {
  const char* name;         // "CUDA_ERROR_INVALID_VALUE"
  const char* description;  // "invalid argument"
};

// nullptr for a value that is not a CUresult of cuda.h.
[[nodiscard]] const ErrorText* error_text(cuda::CUresult result);

}  // namespace gpubroker::sim
