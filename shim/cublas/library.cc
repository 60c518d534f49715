// What the cuBLAS shim answers without the broker: status names and strings, version queries,
// and the legacy (cublas.h) functions whose return value is not a status.
//
// The legacy BLAS-1 functions (cublasSdot, cublasIsamax, ...) return their result and report
// failure through cublasGetError. The real and double ones are served (shim/cublas/cublas.cc); the
// complex ones are not: each logs its name once, records CUBLAS_STATUS_NOT_SUPPORTED for
// cublasGetError and returns zero. (A generated stub would put 15 in eax while the caller reads
// xmm0: a made-up value with no error.)
#include <atomic>
#include <cstddef>

#include "gpubroker/cuda/cublas_api.h"
#include "shim/abi/unsupported.h"
#include "shim/cublas/legacy.h"
#include "shim/cublas/version.h"
#include "shim/trace/recorder.h"

namespace {

constexpr int kSuccess = gpubroker::cuda::CUBLAS_STATUS_SUCCESS;
constexpr int kInvalidValue = gpubroker::cuda::CUBLAS_STATUS_INVALID_VALUE;
constexpr int kNotSupported = gpubroker::cuda::CUBLAS_STATUS_NOT_SUPPORTED;

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

GPUBROKER_LEGACY(Complex, cublasCdotu)
GPUBROKER_LEGACY(Complex, cublasCdotc)
GPUBROKER_LEGACY(DoubleComplex, cublasZdotu)
GPUBROKER_LEGACY(DoubleComplex, cublasZdotc)
GPUBROKER_LEGACY(float, cublasScnrm2)
GPUBROKER_LEGACY(double, cublasDznrm2)
GPUBROKER_LEGACY(float, cublasScasum)
GPUBROKER_LEGACY(double, cublasDzasum)
GPUBROKER_LEGACY(int, cublasIcamax)
GPUBROKER_LEGACY(int, cublasIcamin)
GPUBROKER_LEGACY(int, cublasIzamax)
GPUBROKER_LEGACY(int, cublasIzamin)

}  // extern "C"

void gpubroker::shim::record_legacy_status(int status) {
  if (status != kSuccess) g_legacy_error.store(status, std::memory_order_relaxed);
}

extern "C" {

int cublasGetError() {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(g_legacy_error.exchange(kSuccess, std::memory_order_relaxed));
}

std::size_t cublasGetCudartVersion() {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(gpubroker::shim::kCublasCudartVersion);
}

int cublasGetVersion_v2(void* /*handle*/, int* version) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  if (version == nullptr) GPUBROKER_TRACE_RETURN(kInvalidValue);
  *version = gpubroker::shim::kCublasVersion;
  GPUBROKER_TRACE_RETURN(kSuccess);
}

int cublasGetVersion(int* version) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(cublasGetVersion_v2(nullptr, version));
}

int cublasGetProperty(int type, int* value) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(gpubroker::shim::cublas_property(type, value));
}

const char* cublasGetStatusName(int status) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(gpubroker::shim::cublas_status_name(status));
}

const char* cublasGetStatusString(int status) {
  GPUBROKER_TRACE_ENTRY(kCublas);
  GPUBROKER_TRACE_RETURN(gpubroker::shim::cublas_status_string(status));
}

}  // extern "C"
