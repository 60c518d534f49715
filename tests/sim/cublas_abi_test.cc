// Compile-time check of gpubroker/cuda/cublas_api.h against NVIDIA's cublas_api.h and
// library_types.h: every enum value we declare equals NVIDIA's, and every function type of
// GPUBROKER_CUBLAS_API, with our own handle, stream, half and enum types replaced by NVIDIA's, is
// exactly the type of NVIDIA's declaration of that symbol. Built only where the toolkit's headers
// are installed (tests/sim/meson.build); if this file compiles, the check passed. The Catch2 case
// below only records that it ran; where the headers are absent, sim_test.cc's case of the same name
// reports SKIP.
//
// Our header comes first, so that its struct declarations (cublasContext, CUstream_st) are its own
// and not found in NVIDIA's global namespace.
#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/cublaslt_abi.h"

#include <cublas_api.h>
#include <cublasLt.h>
#include <library_types.h>

#include <catch2/catch.hpp>
#include <type_traits>

namespace ours = gpubroker::cuda;

namespace {

// ---- Enum values -------------------------------------------------------------------------------

#define SAME_VALUE(name)                                                                        \
  static_assert(static_cast<long long>(ours::name) == static_cast<long long>(::name), #name); \
  static_assert(sizeof(ours::name) == sizeof(::name), #name " size");

SAME_VALUE(CUBLAS_STATUS_SUCCESS)
SAME_VALUE(CUBLAS_STATUS_NOT_INITIALIZED)
SAME_VALUE(CUBLAS_STATUS_ALLOC_FAILED)
SAME_VALUE(CUBLAS_STATUS_INVALID_VALUE)
SAME_VALUE(CUBLAS_STATUS_ARCH_MISMATCH)
SAME_VALUE(CUBLAS_STATUS_MAPPING_ERROR)
SAME_VALUE(CUBLAS_STATUS_EXECUTION_FAILED)
SAME_VALUE(CUBLAS_STATUS_INTERNAL_ERROR)
SAME_VALUE(CUBLAS_STATUS_NOT_SUPPORTED)
SAME_VALUE(CUBLAS_STATUS_LICENSE_ERROR)

SAME_VALUE(CUBLAS_FILL_MODE_LOWER)
SAME_VALUE(CUBLAS_FILL_MODE_UPPER)
SAME_VALUE(CUBLAS_FILL_MODE_FULL)
SAME_VALUE(CUBLAS_DIAG_NON_UNIT)
SAME_VALUE(CUBLAS_DIAG_UNIT)
SAME_VALUE(CUBLAS_SIDE_LEFT)
SAME_VALUE(CUBLAS_SIDE_RIGHT)

SAME_VALUE(CUBLAS_OP_N)
SAME_VALUE(CUBLAS_OP_T)
SAME_VALUE(CUBLAS_OP_C)
SAME_VALUE(CUBLAS_OP_HERMITAN)
SAME_VALUE(CUBLAS_OP_CONJG)

SAME_VALUE(CUBLAS_POINTER_MODE_HOST)
SAME_VALUE(CUBLAS_POINTER_MODE_DEVICE)

SAME_VALUE(CUBLAS_DEFAULT_MATH)
SAME_VALUE(CUBLAS_TENSOR_OP_MATH)
SAME_VALUE(CUBLAS_PEDANTIC_MATH)
SAME_VALUE(CUBLAS_TF32_TENSOR_OP_MATH)
SAME_VALUE(CUBLAS_FP32_EMULATED_BF16X9_MATH)
SAME_VALUE(CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH)
SAME_VALUE(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)

SAME_VALUE(CUBLAS_COMPUTE_16F)
SAME_VALUE(CUBLAS_COMPUTE_16F_PEDANTIC)
SAME_VALUE(CUBLAS_COMPUTE_32F)
SAME_VALUE(CUBLAS_COMPUTE_32F_PEDANTIC)
SAME_VALUE(CUBLAS_COMPUTE_64F)
SAME_VALUE(CUBLAS_COMPUTE_64F_PEDANTIC)
SAME_VALUE(CUBLAS_COMPUTE_32I)
SAME_VALUE(CUBLAS_COMPUTE_32I_PEDANTIC)
SAME_VALUE(CUBLAS_COMPUTE_32F_FAST_16F)
SAME_VALUE(CUBLAS_COMPUTE_32F_FAST_16BF)
SAME_VALUE(CUBLAS_COMPUTE_32F_FAST_TF32)
SAME_VALUE(CUBLAS_COMPUTE_32F_EMULATED_16BFX9)
SAME_VALUE(CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT)

SAME_VALUE(CUBLAS_GEMM_DFALT)
SAME_VALUE(CUBLAS_GEMM_DEFAULT)
SAME_VALUE(CUBLAS_GEMM_ALGO0)
SAME_VALUE(CUBLAS_GEMM_ALGO1)
SAME_VALUE(CUBLAS_GEMM_ALGO2)
SAME_VALUE(CUBLAS_GEMM_ALGO3)
SAME_VALUE(CUBLAS_GEMM_ALGO4)
SAME_VALUE(CUBLAS_GEMM_ALGO5)
SAME_VALUE(CUBLAS_GEMM_ALGO6)
SAME_VALUE(CUBLAS_GEMM_ALGO7)
SAME_VALUE(CUBLAS_GEMM_ALGO8)
SAME_VALUE(CUBLAS_GEMM_ALGO9)
SAME_VALUE(CUBLAS_GEMM_ALGO10)
SAME_VALUE(CUBLAS_GEMM_ALGO11)
SAME_VALUE(CUBLAS_GEMM_ALGO12)
SAME_VALUE(CUBLAS_GEMM_ALGO13)
SAME_VALUE(CUBLAS_GEMM_ALGO14)
SAME_VALUE(CUBLAS_GEMM_ALGO15)
SAME_VALUE(CUBLAS_GEMM_ALGO16)
SAME_VALUE(CUBLAS_GEMM_ALGO17)
SAME_VALUE(CUBLAS_GEMM_ALGO18)
SAME_VALUE(CUBLAS_GEMM_ALGO19)
SAME_VALUE(CUBLAS_GEMM_ALGO20)
SAME_VALUE(CUBLAS_GEMM_ALGO21)
SAME_VALUE(CUBLAS_GEMM_ALGO22)
SAME_VALUE(CUBLAS_GEMM_ALGO23)
SAME_VALUE(CUBLAS_GEMM_DEFAULT_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_DFALT_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO0_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO1_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO2_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO3_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO4_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO5_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO6_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO7_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO8_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO9_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO10_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO11_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO12_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO13_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO14_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_ALGO15_TENSOR_OP)
SAME_VALUE(CUBLAS_GEMM_AUTOTUNE)

SAME_VALUE(CUDA_R_32F)
SAME_VALUE(CUDA_R_64F)
SAME_VALUE(CUDA_R_16F)
SAME_VALUE(CUDA_R_8I)
SAME_VALUE(CUDA_C_32F)
SAME_VALUE(CUDA_C_64F)
SAME_VALUE(CUDA_C_16F)
SAME_VALUE(CUDA_C_8I)
SAME_VALUE(CUDA_R_8U)
SAME_VALUE(CUDA_C_8U)
SAME_VALUE(CUDA_R_32I)
SAME_VALUE(CUDA_C_32I)
SAME_VALUE(CUDA_R_32U)
SAME_VALUE(CUDA_C_32U)
SAME_VALUE(CUDA_R_16BF)
SAME_VALUE(CUDA_C_16BF)
SAME_VALUE(CUDA_R_4I)
SAME_VALUE(CUDA_C_4I)
SAME_VALUE(CUDA_R_4U)
SAME_VALUE(CUDA_C_4U)
SAME_VALUE(CUDA_R_16I)
SAME_VALUE(CUDA_C_16I)
SAME_VALUE(CUDA_R_16U)
SAME_VALUE(CUDA_C_16U)
SAME_VALUE(CUDA_R_64I)
SAME_VALUE(CUDA_C_64I)
SAME_VALUE(CUDA_R_64U)
SAME_VALUE(CUDA_C_64U)
SAME_VALUE(CUDA_R_8F_E4M3)
SAME_VALUE(CUDA_R_8F_UE4M3)
SAME_VALUE(CUDA_R_8F_E5M2)
SAME_VALUE(CUDA_R_8F_UE8M0)
SAME_VALUE(CUDA_R_6F_E2M3)
SAME_VALUE(CUDA_R_6F_E3M2)
SAME_VALUE(CUDA_R_4F_E2M1)

#undef SAME_VALUE

// Our enums hold the same values in the same size as NVIDIA's.
#define SAME_SIZE(type) static_assert(sizeof(ours::type) == sizeof(::type) && alignof(ours::type) == alignof(::type), #type);
SAME_SIZE(cublasStatus_t)
SAME_SIZE(cublasFillMode_t)
SAME_SIZE(cublasDiagType_t)
SAME_SIZE(cublasSideMode_t)
SAME_SIZE(cublasOperation_t)
SAME_SIZE(cublasPointerMode_t)
SAME_SIZE(cublasMath_t)
SAME_SIZE(cublasComputeType_t)
SAME_SIZE(cublasGemmAlgo_t)
SAME_SIZE(cudaDataType)
SAME_SIZE(cublasHandle_t)
SAME_SIZE(cudaStream_t)
#undef SAME_SIZE
static_assert(sizeof(ours::HalfBits) == sizeof(::__half) && alignof(ours::HalfBits) == alignof(::__half));
static_assert(sizeof(ours::HalfBits) == sizeof(::__half_raw) && alignof(ours::HalfBits) == alignof(::__half_raw));

// ---- Function types ----------------------------------------------------------------------------

// Our type with each of our own types replaced by NVIDIA's; everything else stays as it is.
template <class T>
struct AsNvidia {
  using type = T;
};
template <class T>
using AsNvidiaT = typename AsNvidia<T>::type;

template <class T>
struct AsNvidia<T*> {
  using type = AsNvidiaT<T>*;
};
template <class T>
struct AsNvidia<const T> {
  using type = const AsNvidiaT<T>;
};
template <class R, class... Parameters>
struct AsNvidia<R(Parameters...)> {
  using type = AsNvidiaT<R>(AsNvidiaT<Parameters>...);
};

#define MAPS_TO(our_type, nvidia_type) \
  template <>                          \
  struct AsNvidia<our_type> {          \
    using type = nvidia_type;          \
  };
MAPS_TO(ours::cublasContext, ::cublasContext)
MAPS_TO(ours::CUstream_st, ::CUstream_st)
MAPS_TO(ours::HalfBits, ::__half)
MAPS_TO(ours::cublasStatus_t, ::cublasStatus_t)
MAPS_TO(ours::cublasFillMode_t, ::cublasFillMode_t)
MAPS_TO(ours::cublasDiagType_t, ::cublasDiagType_t)
MAPS_TO(ours::cublasSideMode_t, ::cublasSideMode_t)
MAPS_TO(ours::cublasOperation_t, ::cublasOperation_t)
MAPS_TO(ours::cublasPointerMode_t, ::cublasPointerMode_t)
MAPS_TO(ours::cublasMath_t, ::cublasMath_t)
MAPS_TO(ours::cublasComputeType_t, ::cublasComputeType_t)
MAPS_TO(ours::cublasGemmAlgo_t, ::cublasGemmAlgo_t)
MAPS_TO(ours::cudaDataType, ::cudaDataType)
#undef MAPS_TO

static_assert(!std::is_same_v<ours::cublasHandle_t, ::cublasHandle_t>, "the mapping below is exercised");
static_assert(std::is_same_v<AsNvidiaT<ours::cublasHandle_t>, ::cublasHandle_t>);
static_assert(std::is_same_v<AsNvidiaT<ours::cudaStream_t>, ::cudaStream_t>);
static_assert(std::is_same_v<AsNvidiaT<const void* const*>, const void* const*>);

}  // namespace

// Expanded inside our namespace, where the X-macro's unqualified type names find our types first.
namespace gpubroker::cuda {
// A static_cast of the function's address to a pointer of our type compiles only if NVIDIA declares
// the symbol with exactly that type (it also picks it among the C++ overloads NVIDIA adds, such as
// cublasGemmEx with a cudaDataType compute type).
#define SAME_FUNCTION_TYPE(member, symbol, type)                                                       \
  static_assert(std::is_same_v<decltype(static_cast<std::add_pointer_t<AsNvidiaT<type>>>(&::symbol)), \
                               std::add_pointer_t<AsNvidiaT<type>>>,                                  \
                #symbol);
GPUBROKER_CUBLAS_API(SAME_FUNCTION_TYPE)
#undef SAME_FUNCTION_TYPE
}  // namespace gpubroker::cuda

// cublaslt_abi.h: the attribute, order, pointer-mode and epilogue values, and the storage sizes.
namespace {
namespace ours_lt = gpubroker::cuda::lt;
#define SAME_LT_VALUE(name) \
  static_assert(static_cast<long long>(ours_lt::name) == static_cast<long long>(::name), #name);
SAME_LT_VALUE(CUBLASLT_MATRIX_LAYOUT_TYPE)
SAME_LT_VALUE(CUBLASLT_MATRIX_LAYOUT_ORDER)
SAME_LT_VALUE(CUBLASLT_MATRIX_LAYOUT_ROWS)
SAME_LT_VALUE(CUBLASLT_MATRIX_LAYOUT_COLS)
SAME_LT_VALUE(CUBLASLT_MATRIX_LAYOUT_LD)
SAME_LT_VALUE(CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT)
SAME_LT_VALUE(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET)
SAME_LT_VALUE(CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET)
SAME_LT_VALUE(CUBLASLT_ORDER_COL)
SAME_LT_VALUE(CUBLASLT_ORDER_ROW)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_SCALE_TYPE)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_POINTER_MODE)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_TRANSA)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_TRANSB)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_TRANSC)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_FILL_MODE)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_EPILOGUE)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_BIAS_POINTER)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_C_SCALE_POINTER)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_D_SCALE_POINTER)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_AMAX_D_POINTER)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_FAST_ACCUM)
SAME_LT_VALUE(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE)
SAME_LT_VALUE(CUBLASLT_POINTER_MODE_HOST)
SAME_LT_VALUE(CUBLASLT_POINTER_MODE_DEVICE)
SAME_LT_VALUE(CUBLASLT_EPILOGUE_DEFAULT)
SAME_LT_VALUE(CUBLASLT_EPILOGUE_RELU)
SAME_LT_VALUE(CUBLASLT_EPILOGUE_BIAS)
SAME_LT_VALUE(CUBLASLT_EPILOGUE_RELU_BIAS)
SAME_LT_VALUE(CUBLASLT_EPILOGUE_GELU)
SAME_LT_VALUE(CUBLASLT_EPILOGUE_GELU_BIAS)
SAME_LT_VALUE(CUBLASLT_MATMUL_PREF_SEARCH_MODE)
SAME_LT_VALUE(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES)
SAME_LT_VALUE(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK)
SAME_LT_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES)
SAME_LT_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES)
SAME_LT_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES)
SAME_LT_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES)
SAME_LT_VALUE(CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT)
SAME_LT_VALUE(CUBLASLT_MATMUL_PREF_IMPL_MASK)
#undef SAME_LT_VALUE
static_assert(sizeof(ours_lt::cublasLtMatmulHeuristicResult_t) == sizeof(::cublasLtMatmulHeuristicResult_t));
static_assert(offsetof(ours_lt::cublasLtMatmulHeuristicResult_t, wavesCount) ==
              offsetof(::cublasLtMatmulHeuristicResult_t, wavesCount));
static_assert(sizeof(ours_lt::cublasLtMatmulAlgo_t) == sizeof(::cublasLtMatmulAlgo_t));
static_assert(ours_lt::kMatmulDescBytes == sizeof(::cublasLtMatmulDescOpaque_t));
static_assert(ours_lt::kMatrixLayoutBytes == sizeof(::cublasLtMatrixLayoutOpaque_t));
static_assert(ours_lt::kPreferenceBytes == sizeof(::cublasLtMatmulPreferenceOpaque_t));
static_assert(sizeof(ours_lt::cublasLtMatmulDescOpaque_t) == sizeof(::cublasLtMatmulDescOpaque_t));
static_assert(sizeof(ours_lt::cublasLtMatrixLayoutOpaque_t) == sizeof(::cublasLtMatrixLayoutOpaque_t));
}  // namespace

TEST_CASE("cublas_api.h matches NVIDIA's cuBLAS and library_types headers", "[sim][cublas][abi][cuda13]") {
  SUCCEED("checked at compile time");
}
