// The legacy cuBLAS API's (cublas.h) one error word, which cublasGetError reads and clears
// (shim/cublas/library.cc), shared by the legacy functions of both of the shim's sources.
#pragma once

namespace gpubroker::shim {

// Records `status` for cublasGetError unless it is success. Any thread.
void record_legacy_status(int status);

}  // namespace gpubroker::shim
