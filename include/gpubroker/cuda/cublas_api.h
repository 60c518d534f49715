// The cuBLAS API subset the broker calls, declared by the project itself (no CUDA toolkit needed to
// build), and the table of function pointers through which the broker calls it.
//
// cuBLAS is remoted at the cuBLAS API (DESIGN.md, "Libraries above the runtime"): the broker owns
// the handles and calls the library. Two libraries implement this table: the system's
// libcublas.so.13 (or .12) on a GPU host, and the project's sim driver (libgpubroker-sim.so), which
// computes the same subset on the CPU, in stream order with the sim's copies and kernels. The broker
// resolves every entry of GPUBROKER_CUBLAS_API with dlsym by the exported symbol name, so both must
// export exactly these names with exactly these signatures. tests/sim/cublas_abi_test.cc checks the
// enum values and the function types here against NVIDIA's cublas_api.h and library_types.h.
//
// Names and values mirror NVIDIA's so that code reads like the cuBLAS documentation. Everything
// lives in namespace gpubroker::cuda, so that NVIDIA's own headers can sit beside it in one
// translation unit. The enums have a fixed underlying type (int, as NVIDIA's C enums have in
// practice) so that any value a client sends, known or not, is a valid value of the type; the
// receiver validates it.
//
// Example (the broker, once per device, with the primary context current):
//
//   CublasTable blas = ...;  // resolved with dlsym
//   cublasHandle_t handle = nullptr;
//   if (blas.create(&handle) != CUBLAS_STATUS_SUCCESS) ...;
//   blas.set_stream(handle, stream);
//   blas.gemm_ex(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, a, CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb,
//                &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT_TENSOR_OP);
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "gpubroker/cuda/driver_api.h"

namespace gpubroker::cuda {

// A cuBLAS handle: opaque, owned by the library that created it. The struct is declared here so
// that it is this namespace's own even where NVIDIA's header declares a global one.
struct cublasContext;
using cublasHandle_t = cublasContext*;

// cudaStream_t and CUstream are the same type in NVIDIA's headers (struct CUstream_st*).
using cudaStream_t = CUstream;

// The bits of one IEEE 754 binary16 value: NVIDIA's __half (and __half_raw) is two bytes holding
// exactly this, and cuBLAS reads and writes it through pointers only.
struct HalfBits {
  std::uint16_t x;
};
static_assert(sizeof(HalfBits) == 2 && alignof(HalfBits) == 2);

enum cublasStatus_t : int {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16,
};

enum cublasFillMode_t : int {
  CUBLAS_FILL_MODE_LOWER = 0,
  CUBLAS_FILL_MODE_UPPER = 1,
  CUBLAS_FILL_MODE_FULL = 2,
};

enum cublasDiagType_t : int {
  CUBLAS_DIAG_NON_UNIT = 0,
  CUBLAS_DIAG_UNIT = 1,
};

enum cublasSideMode_t : int {
  CUBLAS_SIDE_LEFT = 0,
  CUBLAS_SIDE_RIGHT = 1,
};

enum cublasOperation_t : int {
  CUBLAS_OP_N = 0,
  CUBLAS_OP_T = 1,
  CUBLAS_OP_C = 2,  // the conjugate transpose; the same as CUBLAS_OP_T for real types
  CUBLAS_OP_HERMITAN = 2,
  CUBLAS_OP_CONJG = 3,  // a placeholder in NVIDIA's header; refused by the library
};

enum cublasPointerMode_t : int {
  CUBLAS_POINTER_MODE_HOST = 0,
  CUBLAS_POINTER_MODE_DEVICE = 1,
};

// Mode values and, or-ed into them, flags (CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION).
enum cublasMath_t : int {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
  CUBLAS_FP32_EMULATED_BF16X9_MATH = 4,
  CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH = 8,
  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
};

enum cublasComputeType_t : int {
  CUBLAS_COMPUTE_16F = 64,
  CUBLAS_COMPUTE_16F_PEDANTIC = 65,
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_64F = 70,
  CUBLAS_COMPUTE_64F_PEDANTIC = 71,
  CUBLAS_COMPUTE_32I = 72,
  CUBLAS_COMPUTE_32I_PEDANTIC = 73,
  CUBLAS_COMPUTE_32F_FAST_16F = 74,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
  CUBLAS_COMPUTE_32F_EMULATED_16BFX9 = 78,
  CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT = 79,
};

// The algorithm hint of the *Ex GEMMs (a hint only: every value computes the same product).
enum cublasGemmAlgo_t : int {
  CUBLAS_GEMM_DFALT = -1,
  CUBLAS_GEMM_DEFAULT = -1,
  CUBLAS_GEMM_ALGO0 = 0,
  CUBLAS_GEMM_ALGO1 = 1,
  CUBLAS_GEMM_ALGO2 = 2,
  CUBLAS_GEMM_ALGO3 = 3,
  CUBLAS_GEMM_ALGO4 = 4,
  CUBLAS_GEMM_ALGO5 = 5,
  CUBLAS_GEMM_ALGO6 = 6,
  CUBLAS_GEMM_ALGO7 = 7,
  CUBLAS_GEMM_ALGO8 = 8,
  CUBLAS_GEMM_ALGO9 = 9,
  CUBLAS_GEMM_ALGO10 = 10,
  CUBLAS_GEMM_ALGO11 = 11,
  CUBLAS_GEMM_ALGO12 = 12,
  CUBLAS_GEMM_ALGO13 = 13,
  CUBLAS_GEMM_ALGO14 = 14,
  CUBLAS_GEMM_ALGO15 = 15,
  CUBLAS_GEMM_ALGO16 = 16,
  CUBLAS_GEMM_ALGO17 = 17,
  CUBLAS_GEMM_ALGO18 = 18,
  CUBLAS_GEMM_ALGO19 = 19,
  CUBLAS_GEMM_ALGO20 = 20,
  CUBLAS_GEMM_ALGO21 = 21,
  CUBLAS_GEMM_ALGO22 = 22,
  CUBLAS_GEMM_ALGO23 = 23,
  CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99,
  CUBLAS_GEMM_DFALT_TENSOR_OP = 99,
  CUBLAS_GEMM_ALGO0_TENSOR_OP = 100,
  CUBLAS_GEMM_ALGO1_TENSOR_OP = 101,
  CUBLAS_GEMM_ALGO2_TENSOR_OP = 102,
  CUBLAS_GEMM_ALGO3_TENSOR_OP = 103,
  CUBLAS_GEMM_ALGO4_TENSOR_OP = 104,
  CUBLAS_GEMM_ALGO5_TENSOR_OP = 105,
  CUBLAS_GEMM_ALGO6_TENSOR_OP = 106,
  CUBLAS_GEMM_ALGO7_TENSOR_OP = 107,
  CUBLAS_GEMM_ALGO8_TENSOR_OP = 108,
  CUBLAS_GEMM_ALGO9_TENSOR_OP = 109,
  CUBLAS_GEMM_ALGO10_TENSOR_OP = 110,
  CUBLAS_GEMM_ALGO11_TENSOR_OP = 111,
  CUBLAS_GEMM_ALGO12_TENSOR_OP = 112,
  CUBLAS_GEMM_ALGO13_TENSOR_OP = 113,
  CUBLAS_GEMM_ALGO14_TENSOR_OP = 114,
  CUBLAS_GEMM_ALGO15_TENSOR_OP = 115,
  CUBLAS_GEMM_AUTOTUNE = 999,
};

// Element types (library_types.h). The sim computes CUDA_R_32F, CUDA_R_16F and CUDA_R_16BF.
enum cudaDataType_t : int {
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16F = 2,
  CUDA_R_8I = 3,
  CUDA_C_32F = 4,
  CUDA_C_64F = 5,
  CUDA_C_16F = 6,
  CUDA_C_8I = 7,
  CUDA_R_8U = 8,
  CUDA_C_8U = 9,
  CUDA_R_32I = 10,
  CUDA_C_32I = 11,
  CUDA_R_32U = 12,
  CUDA_C_32U = 13,
  CUDA_R_16BF = 14,
  CUDA_C_16BF = 15,
  CUDA_R_4I = 16,
  CUDA_C_4I = 17,
  CUDA_R_4U = 18,
  CUDA_C_4U = 19,
  CUDA_R_16I = 20,
  CUDA_C_16I = 21,
  CUDA_R_16U = 22,
  CUDA_C_16U = 23,
  CUDA_R_64I = 24,
  CUDA_C_64I = 25,
  CUDA_R_64U = 26,
  CUDA_C_64U = 27,
  CUDA_R_8F_E4M3 = 28,
  CUDA_R_8F_UE4M3 = 28,
  CUDA_R_8F_E5M2 = 29,
  CUDA_R_8F_UE8M0 = 30,
  CUDA_R_6F_E2M3 = 31,
  CUDA_R_6F_E3M2 = 32,
  CUDA_R_4F_E2M1 = 33,
};
using cudaDataType = cudaDataType_t;

// Every cuBLAS function the broker calls: X(member, exported symbol, function type). The type is
// written like a declaration, so name its pointer std::add_pointer_t<type> (not type*). Array
// parameters (`const float* const A[]` in NVIDIA's header) are written as the pointers they are;
// the arrays of the batched GEMMs and of cublasStrsmBatched live in device memory.
#define GPUBROKER_CUBLAS_API(X)                                                                              \
  X(create, cublasCreate_v2, cublasStatus_t(cublasHandle_t * handle))                                        \
  X(destroy, cublasDestroy_v2, cublasStatus_t(cublasHandle_t handle))                                        \
  X(get_version, cublasGetVersion_v2, cublasStatus_t(cublasHandle_t handle, int* version))                   \
  X(set_stream, cublasSetStream_v2, cublasStatus_t(cublasHandle_t handle, cudaStream_t stream))              \
  X(get_stream, cublasGetStream_v2, cublasStatus_t(cublasHandle_t handle, cudaStream_t * stream))            \
  X(set_math_mode, cublasSetMathMode, cublasStatus_t(cublasHandle_t handle, cublasMath_t mode))              \
  X(get_math_mode, cublasGetMathMode, cublasStatus_t(cublasHandle_t handle, cublasMath_t * mode))            \
  X(set_workspace, cublasSetWorkspace_v2,                                                                    \
    cublasStatus_t(cublasHandle_t handle, void* workspace, std::size_t workspace_bytes))                     \
  X(set_pointer_mode, cublasSetPointerMode_v2, cublasStatus_t(cublasHandle_t handle, cublasPointerMode_t mode)) \
  X(get_pointer_mode, cublasGetPointerMode_v2,                                                               \
    cublasStatus_t(cublasHandle_t handle, cublasPointerMode_t * mode))                                       \
  X(sgemm, cublasSgemm_v2,                                                                                   \
    cublasStatus_t(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,  \
                   int k, const float* alpha, const float* a, int lda, const float* b, int ldb,              \
                   const float* beta, float* c, int ldc))                                                    \
  X(hgemm, cublasHgemm,                                                                                      \
    cublasStatus_t(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,  \
                   int k, const HalfBits* alpha, const HalfBits* a, int lda, const HalfBits* b, int ldb,     \
                   const HalfBits* beta, HalfBits* c, int ldc))                                              \
  X(gemm_ex, cublasGemmEx,                                                                                   \
    cublasStatus_t(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,  \
                   int k, const void* alpha, const void* a, cudaDataType a_type, int lda, const void* b,     \
                   cudaDataType b_type, int ldb, const void* beta, void* c, cudaDataType c_type, int ldc,    \
                   cublasComputeType_t compute_type, cublasGemmAlgo_t algo))                                 \
  X(gemm_strided_batched_ex, cublasGemmStridedBatchedEx,                                                     \
    cublasStatus_t(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,  \
                   int k, const void* alpha, const void* a, cudaDataType a_type, int lda, long long stride_a, \
                   const void* b, cudaDataType b_type, int ldb, long long stride_b, const void* beta,        \
                   void* c, cudaDataType c_type, int ldc, long long stride_c, int batch_count,               \
                   cublasComputeType_t compute_type, cublasGemmAlgo_t algo))                                 \
  X(gemm_batched_ex, cublasGemmBatchedEx,                                                                    \
    cublasStatus_t(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,  \
                   int k, const void* alpha, const void* const* a_array, cudaDataType a_type, int lda,       \
                   const void* const* b_array, cudaDataType b_type, int ldb, const void* beta,               \
                   void* const* c_array, cudaDataType c_type, int ldc, int batch_count,                      \
                   cublasComputeType_t compute_type, cublasGemmAlgo_t algo))                                 \
  X(sgemm_batched, cublasSgemmBatched,                                                                       \
    cublasStatus_t(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,  \
                   int k, const float* alpha, const float* const* a_array, int lda,                          \
                   const float* const* b_array, int ldb, const float* beta, float* const* c_array, int ldc,  \
                   int batch_count))                                                                         \
  X(sgemm_strided_batched, cublasSgemmStridedBatched,                                                        \
    cublasStatus_t(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,  \
                   int k, const float* alpha, const float* a, int lda, long long stride_a, const float* b,   \
                   int ldb, long long stride_b, const float* beta, float* c, int ldc, long long stride_c,    \
                   int batch_count))                                                                         \
  X(strsm_batched, cublasStrsmBatched,                                                                       \
    cublasStatus_t(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,                      \
                   cublasOperation_t trans, cublasDiagType_t diag, int m, int n, const float* alpha,         \
                   const float* const* a_array, int lda, float* const* b_array, int ldb, int batch_count))   \
  X(axpy_ex, cublasAxpyEx,                                                                                   \
    cublasStatus_t(cublasHandle_t handle, int n, const void* alpha, cudaDataType alpha_type, const void* x,  \
                   cudaDataType x_type, int incx, void* y, cudaDataType y_type, int incy,                    \
                   cudaDataType execution_type))                                                             \
  X(scal_ex, cublasScalEx,                                                                                   \
    cublasStatus_t(cublasHandle_t handle, int n, const void* alpha, cudaDataType alpha_type, void* x,        \
                   cudaDataType x_type, int incx, cudaDataType execution_type))                              \
  X(dot_ex, cublasDotEx,                                                                                     \
    cublasStatus_t(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx, const void* y, \
                   cudaDataType y_type, int incy, void* result, cudaDataType result_type,                    \
                   cudaDataType execution_type))                                                             \
  X(nrm2_ex, cublasNrm2Ex,                                                                                   \
    cublasStatus_t(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx, void* result, \
                   cudaDataType result_type, cudaDataType execution_type))                                   \
  X(asum_ex, cublasAsumEx,                                                                                   \
    cublasStatus_t(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx, void* result, \
                   cudaDataType result_type, cudaDataType execution_type))                                   \
  X(iamax_ex, cublasIamaxEx,                                                                                 \
    cublasStatus_t(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx, int* result)) \
  X(iamin_ex, cublasIaminEx,                                                                                 \
    cublasStatus_t(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx, int* result)) \
  X(copy_ex, cublasCopyEx,                                                                                   \
    cublasStatus_t(cublasHandle_t handle, int n, const void* x, cudaDataType x_type, int incx, void* y,      \
                   cudaDataType y_type, int incy))                                                           \
  X(swap_ex, cublasSwapEx,                                                                                   \
    cublasStatus_t(cublasHandle_t handle, int n, void* x, cudaDataType x_type, int incx, void* y,            \
                   cudaDataType y_type, int incy))                                                           \
  X(sgetrf_batched, cublasSgetrfBatched,                                                                     \
    cublasStatus_t(cublasHandle_t handle, int n, float* const* a_array, int lda, int* pivots, int* info,      \
                   int batch_count))                                                                         \
  X(dgetrf_batched, cublasDgetrfBatched,                                                                     \
    cublasStatus_t(cublasHandle_t handle, int n, double* const* a_array, int lda, int* pivots, int* info,     \
                   int batch_count))                                                                         \
  X(sgetrs_batched, cublasSgetrsBatched,                                                                     \
    cublasStatus_t(cublasHandle_t handle, cublasOperation_t trans, int n, int nrhs, const float* const* a_array, \
                   int lda, const int* pivots, float* const* b_array, int ldb, int* info, int batch_count))   \
  X(dgetrs_batched, cublasDgetrsBatched,                                                                     \
    cublasStatus_t(cublasHandle_t handle, cublasOperation_t trans, int n, int nrhs, const double* const* a_array, \
                   int lda, const int* pivots, double* const* b_array, int ldb, int* info, int batch_count))  \
  X(sgetri_batched, cublasSgetriBatched,                                                                     \
    cublasStatus_t(cublasHandle_t handle, int n, const float* const* a_array, int lda, const int* pivots,     \
                   float* const* c_array, int ldc, int* info, int batch_count))                              \
  X(dgetri_batched, cublasDgetriBatched,                                                                     \
    cublasStatus_t(cublasHandle_t handle, int n, const double* const* a_array, int lda, const int* pivots,    \
                   double* const* c_array, int ldc, int* info, int batch_count))                             \
  X(dtrsm_batched, cublasDtrsmBatched,                                                                       \
    cublasStatus_t(cublasHandle_t handle, cublasSideMode_t side, cublasFillMode_t uplo,                      \
                   cublasOperation_t trans, cublasDiagType_t diag, int m, int n, const double* alpha,        \
                   const double* const* a_array, int lda, double* const* b_array, int ldb, int batch_count)) \
  X(get_status_string, cublasGetStatusString, const char*(cublasStatus_t status))                            \
  X(get_status_name, cublasGetStatusName, const char*(cublasStatus_t status))

// The table the broker calls through. Every member is resolved at start-up or the library is
// refused as incomplete.
struct CublasTable {
#define GPUBROKER_CUBLAS_MEMBER(member, symbol, type) std::add_pointer_t<type> member = nullptr;
  GPUBROKER_CUBLAS_API(GPUBROKER_CUBLAS_MEMBER)
#undef GPUBROKER_CUBLAS_MEMBER
};

}  // namespace gpubroker::cuda
