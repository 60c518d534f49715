// The cuBLASLt ABI, declared by the project itself (no CUDA toolkit needed to build): the
// descriptor attributes, the opaque storage a program may allocate for a descriptor itself, the
// heuristic result, and the table of the functions the broker calls. Values mirror NVIDIA's
// cublasLt.h (12.9 and 13.0 agree on every name here); tests/sim/cublas_abi_test.cc checks them
// against that header.
//
// cuBLASLt descriptors are host objects: a program creates them (or initializes storage of its
// own with the *_Init_internal entry points, which is what NVIDIA's inline cublasLt*Init helpers
// call), sets attributes, and passes them to cublasLtMatmul. The shim keeps them in the process
// and sends one complete description of the product with each matmul (wire::BlasLtMatmulRequest);
// the broker builds its own descriptors from it and calls the table below, which the system's
// libcublasLt.so.13 (or .12) implements on a GPU host and the sim driver on the CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "gpubroker/cuda/cublas_api.h"

namespace gpubroker::cuda::lt {

// The storage NVIDIA's header declares for descriptors a program allocates itself; a shim
// descriptor must fit in it.
inline constexpr std::size_t kMatmulDescBytes = 32 * 8;  // cublasLtMatmulDescOpaque_t
inline constexpr std::size_t kMatrixLayoutBytes = 8 * 8;  // cublasLtMatrixLayoutOpaque_t
inline constexpr std::size_t kPreferenceBytes = 8 * 8;  // cublasLtMatmulPreferenceOpaque_t

struct cublasLtMatmulAlgo_t {
  std::uint64_t data[8];
};

struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  std::size_t workspaceSize;
  int state;  // cublasStatus_t
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(cublasLtMatmulHeuristicResult_t) == 96);

enum cublasLtMatrixLayoutAttribute_t : int {
  CUBLASLT_MATRIX_LAYOUT_TYPE = 0,                  // uint32_t cudaDataType
  CUBLASLT_MATRIX_LAYOUT_ORDER = 1,                 // int32_t cublasLtOrder_t
  CUBLASLT_MATRIX_LAYOUT_ROWS = 2,                  // uint64_t
  CUBLASLT_MATRIX_LAYOUT_COLS = 3,                  // uint64_t
  CUBLASLT_MATRIX_LAYOUT_LD = 4,                    // int64_t
  CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,           // int32_t
  CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,  // int64_t, in elements
  CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET = 7,          // int64_t
};

enum cublasLtOrder_t : int {
  CUBLASLT_ORDER_COL = 0,
  CUBLASLT_ORDER_ROW = 1,
};

enum cublasLtMatmulDescAttributes_t : int {
  CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,       // int32_t cublasComputeType_t
  CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,         // int32_t cudaDataType
  CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,       // int32_t cublasLtPointerMode_t
  CUBLASLT_MATMUL_DESC_TRANSA = 3,             // int32_t cublasOperation_t
  CUBLASLT_MATMUL_DESC_TRANSB = 4,             // int32_t
  CUBLASLT_MATMUL_DESC_TRANSC = 5,             // int32_t
  CUBLASLT_MATMUL_DESC_FILL_MODE = 6,          // int32_t cublasFillMode_t
  CUBLASLT_MATMUL_DESC_EPILOGUE = 7,           // uint32_t cublasLtEpilogue_t
  CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,       // void*
  CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE = 10,  // int64_t
  CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11,  // void*
  CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET = 15,   // int32_t
  CUBLASLT_MATMUL_DESC_A_SCALE_POINTER = 17,   // void*
  CUBLASLT_MATMUL_DESC_B_SCALE_POINTER = 18,   // void*
  CUBLASLT_MATMUL_DESC_C_SCALE_POINTER = 19,   // void*
  CUBLASLT_MATMUL_DESC_D_SCALE_POINTER = 20,   // void*
  CUBLASLT_MATMUL_DESC_AMAX_D_POINTER = 21,    // void*
  CUBLASLT_MATMUL_DESC_FAST_ACCUM = 25,        // int8_t
  CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,    // int32_t cudaDataType
};

enum cublasLtPointerMode_t : int {
  CUBLASLT_POINTER_MODE_HOST = 0,
  CUBLASLT_POINTER_MODE_DEVICE = 1,
};

enum cublasLtEpilogue_t : unsigned {
  CUBLASLT_EPILOGUE_DEFAULT = 1,
  CUBLASLT_EPILOGUE_RELU = 2,
  CUBLASLT_EPILOGUE_BIAS = 4,
  CUBLASLT_EPILOGUE_RELU_BIAS = 6,
  CUBLASLT_EPILOGUE_GELU = 32,
  CUBLASLT_EPILOGUE_GELU_BIAS = 36,
};

enum cublasLtMatmulPreferenceAttributes_t : int {
  CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,             // uint32_t
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,     // uint64_t
  CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = 3,   // uint32_t
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,   // uint32_t
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,   // uint32_t
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,   // uint32_t
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,   // uint32_t
  CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT = 9,         // float
  CUBLASLT_MATMUL_PREF_IMPL_MASK = 12,              // uint64_t
};

// Handles and descriptors: opaque, owned by the library that made them. Declared here so that they
// are this namespace's own even where NVIDIA's header declares global ones.
struct cublasLtContext;
using cublasLtHandle_t = cublasLtContext*;
struct cublasLtMatmulDescOpaque_t {
  std::uint64_t data[32];
};
using cublasLtMatmulDesc_t = cublasLtMatmulDescOpaque_t*;
struct cublasLtMatrixLayoutOpaque_t {
  std::uint64_t data[8];
};
using cublasLtMatrixLayout_t = cublasLtMatrixLayoutOpaque_t*;

// Every cuBLASLt function the broker calls: X(member, exported symbol, function type).
#define GPUBROKER_CUBLASLT_API(X)                                                                            \
  X(create, cublasLtCreate, cublasStatus_t(cublasLtHandle_t * handle))                                       \
  X(destroy, cublasLtDestroy, cublasStatus_t(cublasLtHandle_t handle))                                       \
  X(matmul_desc_create, cublasLtMatmulDescCreate,                                                            \
    cublasStatus_t(cublasLtMatmulDesc_t * desc, cublasComputeType_t compute_type, cudaDataType_t scale_type))  \
  X(matmul_desc_destroy, cublasLtMatmulDescDestroy, cublasStatus_t(cublasLtMatmulDesc_t desc))              \
  X(matmul_desc_set_attribute, cublasLtMatmulDescSetAttribute,                                               \
    cublasStatus_t(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const void* buffer,   \
                   std::size_t bytes))                                                                       \
  X(matrix_layout_create, cublasLtMatrixLayoutCreate,                                                        \
    cublasStatus_t(cublasLtMatrixLayout_t * layout, cudaDataType type, std::uint64_t rows, std::uint64_t cols, \
                   std::int64_t ld))                                                                         \
  X(matrix_layout_destroy, cublasLtMatrixLayoutDestroy, cublasStatus_t(cublasLtMatrixLayout_t layout))       \
  X(matrix_layout_set_attribute, cublasLtMatrixLayoutSetAttribute,                                           \
    cublasStatus_t(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attribute,                 \
                   const void* buffer, std::size_t bytes))                                                   \
  X(matmul, cublasLtMatmul,                                                                                  \
    cublasStatus_t(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* a,     \
                   cublasLtMatrixLayout_t a_layout, const void* b, cublasLtMatrixLayout_t b_layout,          \
                   const void* beta, const void* c, cublasLtMatrixLayout_t c_layout, void* d,                \
                   cublasLtMatrixLayout_t d_layout, const cublasLtMatmulAlgo_t* algo, void* workspace,      \
                   std::size_t workspace_bytes, cudaStream_t stream))

// The table the broker calls through; every member is resolved at start-up or the library is
// refused as incomplete.
struct CublasLtTable {
#define GPUBROKER_CUBLASLT_MEMBER(member, symbol, type) std::add_pointer_t<type> member = nullptr;
  GPUBROKER_CUBLASLT_API(GPUBROKER_CUBLASLT_MEMBER)
#undef GPUBROKER_CUBLASLT_MEMBER
};

}  // namespace gpubroker::cuda::lt
