// What the cuBLAS shim answers without the broker: status names and strings, version queries,
// and the legacy (cublas.h) functions whose return value is not a status.
//
// The legacy BLAS-1 functions (cublasSdot, cublasIsamax, ...) return their result and report
// failure through cublasGetError. The shim does not serve them: each logs its name once, records
// CUBLAS_STATUS_NOT_SUPPORTED for cublasGetError and returns zero. (A generated stub would put 15
// in eax while the caller reads xmm0: a made-up value with no error.)
#include <atomic>
#include <cstddef>

#include "gpubroker/cuda/cublas_api.h"
#include "shim/abi/unsupported.h"

namespace {

constexpr int kSuccess = gpubroker::cuda::CUBLAS_STATUS_SUCCESS;
constexpr int kInvalidValue = gpubroker::cuda::CUBLAS_STATUS_INVALID_VALUE;
constexpr int kNotSupported = gpubroker::cuda::CUBLAS_STATUS_NOT_SUPPORTED;

// The version of the cuBLAS whose ABI this library presents (its symbols file's source).
#if GPUBROKER_CUBLAS_ABI == 12
constexpr int kMajor = 12, kMinor = 9, kPatch = 3;
constexpr std::size_t kCudartVersion = 12090;
#else
constexpr int kMajor = 13, kMinor = 1, kPatch = 0;
constexpr std::size_t kCudartVersion = 13000;
#endif

// The legacy API's one error word (cublasGetError reads and clears it), process-wide as in
// cuBLAS. Relaxed: a status report, ordered against nothing else.
std::atomic<int> g_legacy_error{kSuccess};

struct Complex {
  float x, y;
};
struct DoubleComplex {
  double x, y;
};

template <class T>
T legacy_unsupported(const char* name) {
  gpubroker_log_unsupported_in(name, "cuBLAS", "zero (cublasGetError: CUBLAS_STATUS_NOT_SUPPORTED)");
  g_legacy_error.store(kNotSupported, std::memory_order_relaxed);
  return T{};
}

}  // namespace

// Arguments are ignored, so they are not declared (the caller owns and cleans them up).
#define GPUBROKER_LEGACY(type, name) \
  type name() { return legacy_unsupported<type>(#name); }

extern "C" {

GPUBROKER_LEGACY(float, cublasSdot)
GPUBROKER_LEGACY(double, cublasDdot)
GPUBROKER_LEGACY(Complex, cublasCdotu)
GPUBROKER_LEGACY(Complex, cublasCdotc)
GPUBROKER_LEGACY(DoubleComplex, cublasZdotu)
GPUBROKER_LEGACY(DoubleComplex, cublasZdotc)
GPUBROKER_LEGACY(float, cublasSnrm2)
GPUBROKER_LEGACY(double, cublasDnrm2)
GPUBROKER_LEGACY(float, cublasScnrm2)
GPUBROKER_LEGACY(double, cublasDznrm2)
GPUBROKER_LEGACY(float, cublasSasum)
GPUBROKER_LEGACY(double, cublasDasum)
GPUBROKER_LEGACY(float, cublasScasum)
GPUBROKER_LEGACY(double, cublasDzasum)
GPUBROKER_LEGACY(int, cublasIsamax)
GPUBROKER_LEGACY(int, cublasIsamin)
GPUBROKER_LEGACY(int, cublasIdamax)
GPUBROKER_LEGACY(int, cublasIdamin)
GPUBROKER_LEGACY(int, cublasIcamax)
GPUBROKER_LEGACY(int, cublasIcamin)
GPUBROKER_LEGACY(int, cublasIzamax)
GPUBROKER_LEGACY(int, cublasIzamin)

int cublasGetError() { return g_legacy_error.exchange(kSuccess, std::memory_order_relaxed); }

std::size_t cublasGetCudartVersion() { return kCudartVersion; }

int cublasGetVersion_v2(void* /*handle*/, int* version) {
  if (version == nullptr) return kInvalidValue;
  *version = kMajor * 10000 + kMinor * 100 + kPatch;
  return kSuccess;
}

int cublasGetVersion(int* version) { return cublasGetVersion_v2(nullptr, version); }

// libraryPropertyType: MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL.
int cublasGetProperty(int type, int* value) {
  if (value == nullptr) return kInvalidValue;
  switch (type) {
    case 0: *value = kMajor; return kSuccess;
    case 1: *value = kMinor; return kSuccess;
    case 2: *value = kPatch; return kSuccess;
    default: return kInvalidValue;
  }
}

const char* cublasGetStatusName(int status) {
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

const char* cublasGetStatusString(int status) {
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

}  // extern "C"
