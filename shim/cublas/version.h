// What the cuBLAS and cuBLASLt shims answer about the library itself: the version of NVIDIA's
// library whose ABI they present (GPUBROKER_CUBLAS_ABI = 12 or 13; the symbols files name the
// source), the runtime it was built for, and the names and texts of the status codes. Both
// libraries of one version answer the same, as NVIDIA's pair does.
#pragma once

#include <cstddef>

namespace gpubroker::shim {

#if GPUBROKER_CUBLAS_ABI == 12
inline constexpr int kCublasMajor = 12, kCublasMinor = 9, kCublasPatch = 3;
inline constexpr std::size_t kCublasCudartVersion = 12090;
#else
inline constexpr int kCublasMajor = 13, kCublasMinor = 1, kCublasPatch = 0;
inline constexpr std::size_t kCublasCudartVersion = 13000;
#endif
inline constexpr int kCublasVersion = kCublasMajor * 10000 + kCublasMinor * 100 + kCublasPatch;

// libraryPropertyType: MAJOR_VERSION (0), MINOR_VERSION (1), PATCH_LEVEL (2). A cublasStatus_t.
inline int cublas_property(int type, int* value) {
  if (value == nullptr) return 7;  // CUBLAS_STATUS_INVALID_VALUE
  switch (type) {
    case 0: *value = kCublasMajor; return 0;
    case 1: *value = kCublasMinor; return 0;
    case 2: *value = kCublasPatch; return 0;
    default: return 7;
  }
}

inline const char* cublas_status_name(int status) {
  switch (status) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

inline const char* cublas_status_string(int status) {
  switch (status) {
    case 0: return "the operation completed successfully";
    case 1: return "the library was not initialized";
    case 3: return "the resource allocation failed";
    case 7: return "an invalid numeric value was used as an argument";
    case 8: return "an absent device architectural feature is required";
    case 11: return "an access to GPU memory space failed";
    case 13: return "the GPU program failed to execute";
    case 14: return "an internal operation failed";
    case 15: return "the functionality requested is not supported";
    case 16: return "error detected trying to check the license";
    default: return "unknown error";
  }
}

}  // namespace gpubroker::shim
