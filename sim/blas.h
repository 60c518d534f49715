// The BLAS work a sim stream executes for the sim's cuBLAS (sim/cublas.cc): GEMMs and batched
// triangular solves, computed on the CPU, column-major as cuBLAS defines them.
//
// Like every Operation (sim/operations.h) these are data, so that stream capture records them
// into a graph and each graph launch replays them. The API call checks arguments and, outside a
// capture, the device ranges it can see; the worker checks every device range again when the
// operation runs (the pointer arrays of the batched calls, and device-mode alpha/beta, are only
// read then, as the GPU reads them), and an operation touching memory outside the live
// allocations fails with CUDA_ERROR_ILLEGAL_ADDRESS instead of touching it: the stream's sticky
// error, like a GPU fault.
//
// Arithmetic: every element is widened to float, products are accumulated in float, and
// C = alpha * sum + beta * C is rounded once to C's type (for CUBLAS_COMPUTE_16F too). With
// beta == 0, C is not read (a NaN there does not propagate). FP64 GEMMs (all of A, B and C in
// kFloat64) are computed in double throughout.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gpubroker/cuda/driver_api.h"

namespace gpubroker::sim {

// kFloat64: the FP64 GEMMs (CUBLAS_COMPUTE_64F), computed in double throughout.
enum class ElementType : std::uint8_t { kFloat32, kFloat16, kBfloat16, kFloat64 };

[[nodiscard]] constexpr std::size_t element_bytes(ElementType type) {
  return type == ElementType::kFloat64 ? 8 : type == ElementType::kFloat32 ? 4 : 2;
}

// One element at a host address (device memory is host memory at the CUdeviceptr address), widened
// to float. The address may be unaligned (a client's choice): the access goes through memcpy.
[[nodiscard]] float load_element(ElementType type, std::uintptr_t address);
// The same in double: exact for kFloat64, the widened float for the others.
[[nodiscard]] double load_double(ElementType type, std::uintptr_t address);

// alpha and beta: values read at the call (host pointer mode), or device addresses read when the
// operation runs (device pointer mode). `type` is kFloat32, kFloat16 or kFloat64.
struct BlasScalars {
  ElementType type = ElementType::kFloat32;
  bool on_device = false;
  double alpha = 1.0;
  double beta = 0.0;
  std::uintptr_t alpha_address = 0;
  std::uintptr_t beta_address = 0;
};

// One operand of a batched call: the first matrix and the stride between matrices (in elements),
// or the device address of an array of `batch` pointers to the matrices.
struct BlasOperand {
  std::uintptr_t address = 0;
  ElementType type = ElementType::kFloat32;
  int ld = 0;
  long long stride = 0;
  bool pointer_array = false;
};

// What cuBLASLt's epilogues apply to each element after the product: the bias (one value per row,
// added first), then the activation. GELU is the tanh approximation, as cuBLASLt computes it.
enum class Activation : std::uint8_t { kNone, kRelu, kGelu };

// C(i) = alpha * op(A(i)) * op(B(i)) + beta * C(i) for i < batch; op(A) is m x k, op(B) k x n.
// Checked by the API call: m, n and batch > 0 (empty calls are not queued), k >= 0, every ld large
// enough for its matrix. cuBLASLt's matmul writes D instead of C when `d.address` is set, and may
// add a bias vector and an activation (sim/cublaslt.cc).
struct GemmOp {
  bool transpose_a = false;
  bool transpose_b = false;
  int m = 0;
  int n = 0;
  int k = 0;
  int batch = 1;
  BlasOperand a;
  BlasOperand b;
  BlasOperand c;
  BlasScalars scalars;
  BlasOperand d;  // address 0: the result goes to C
  Activation activation = Activation::kNone;
  BlasOperand bias;  // address 0: no bias; else m elements per batch member, `stride` apart
  // The handle's workspace (cublasSetWorkspace), 0 for the library's own. As cuBLAS does, the GEMM
  // uses it as scratch: it writes its first bytes, so a workspace that is no longer live device
  // memory faults the GEMM (CUDA_ERROR_ILLEGAL_ADDRESS), and one given to another owner since is
  // written.
  std::uintptr_t workspace = 0;
  std::size_t workspace_bytes = 0;
};

// cublasStrsmBatched: solves op(A(i)) X = alpha B(i) (left) or X op(A(i)) = alpha B(i) (right) for
// each i < batch, X overwriting B(i) (m x n); A(i) is triangular, m x m (left) or n x n (right),
// and only its `lower` or upper triangle is read. FP32 or FP64 (`type`), pointer arrays in device
// memory.
struct TrsmOp {
  ElementType type = ElementType::kFloat32;
  bool left = true;
  bool lower = true;
  bool transpose = false;
  bool unit_diagonal = false;
  int m = 0;
  int n = 0;
  int batch = 1;
  std::uintptr_t a_array = 0;
  int lda = 0;
  std::uintptr_t b_array = 0;
  int ldb = 0;
  BlasScalars scalars;
};

// The BLAS-1 functions (cublasAxpyEx and its family, and every typed form over them): vectors of
// n elements of float or double, x and y `incx`/`incy` elements apart. A negative increment walks
// the vector from its far end, as reference BLAS does (element i of x is at x + (n-1-i)|incx| then);
// the functions of x alone (scal, nrm2, asum, amax, amin) do nothing, or answer 0, for incx <= 0.
enum class VectorFunction : std::uint8_t { kAxpy, kScal, kDot, kNrm2, kAsum, kAmax, kAmin, kCopy, kSwap };

struct VectorOp {
  VectorFunction function = VectorFunction::kAxpy;
  bool is_double = false;  // the element type: double, else float
  int n = 0;
  std::uintptr_t x = 0;
  int incx = 1;
  std::uintptr_t y = 0;
  int incy = 1;
  // alpha (axpy, scal) read at the call, or its device address (device pointer mode).
  double alpha = 0.0;
  std::uintptr_t alpha_address = 0;
  // Where the result goes (dot, nrm2, asum: the element type; amax, amin: a 1-based int): device
  // memory (device pointer mode), or the calling thread's host variable, which the call waits for.
  std::uintptr_t result = 0;
  bool result_on_host = false;
};

// The batched LU functions, on the matrices whose addresses are in the device array `a_array`
// (n x n, leading dimension lda), with LAPACK's pivots (n 1-based row indices per matrix; 0: none):
// - kFactor (cublas?getrfBatched): P A = L U in place (L's unit diagonal not stored); info[i] = 0,
//   or the 1-based column of matrix i's first zero pivot (the factorization goes on, as LAPACK's).
// - kSolve (cublas?getrsBatched): op(A) X = B for the factored A, X over B (n x nrhs in `b_array`,
//   leading dimension ldb); `info` unused (the call reports argument errors itself).
// - kInvert (cublas?getriBatched): C = inv(A) for the factored A, C in `b_array` (ldb); info[i] as
//   for kFactor, C left unwritten for a singular A.
enum class LuFunction : std::uint8_t { kFactor, kSolve, kInvert };

struct LuOp {
  LuFunction function = LuFunction::kFactor;
  bool is_double = false;
  bool transpose = false;  // kSolve: A^T X = B
  int n = 0;
  int nrhs = 0;
  int batch = 0;
  std::uintptr_t a_array = 0;
  int lda = 0;
  std::uintptr_t b_array = 0;
  int ldb = 0;
  std::uintptr_t pivots = 0;  // 0: no pivoting
  std::uintptr_t info = 0;
};

[[nodiscard]] bool lu_ranges_valid_at_call(const LuOp& lu);
[[nodiscard]] cuda::CUresult execute_lu(const LuOp& lu);

// Bytes from a strided vector's first element to one past its last: 0 for n <= 0, UINT64_MAX when
// that does not fit in 64 bits.
[[nodiscard]] std::uint64_t vector_span_bytes(int n, int increment, std::size_t element);

// The ranges of a VectorOp, checked at the call and again when it runs.
[[nodiscard]] bool vector_ranges_valid(const VectorOp& vector);

// Run on a stream's worker thread. CUDA_ERROR_ILLEGAL_ADDRESS when a range the operation would
// read or write is not live device memory (nothing is written then for that matrix; earlier batch
// members may have been).
[[nodiscard]] cuda::CUresult execute_gemm(const GemmOp& gemm);
[[nodiscard]] cuda::CUresult execute_trsm(const TrsmOp& trsm);
[[nodiscard]] cuda::CUresult execute_vector(const VectorOp& vector);

// The checks an API call can make before the operation runs (outside a capture, whose pointers
// may be placeholders): device-mode scalars, strided operands over the whole batch, and the
// pointer arrays themselves, not what they point to (an earlier kernel may still be writing them).
[[nodiscard]] bool gemm_ranges_valid_at_call(const GemmOp& gemm);
[[nodiscard]] bool trsm_ranges_valid_at_call(const TrsmOp& trsm);

// Bytes from the first element of a column-major rows x columns matrix with leading dimension ld
// to one past its last: 0 for an empty matrix, UINT64_MAX when that does not fit in 64 bits.
[[nodiscard]] constexpr std::uint64_t matrix_span_bytes(int rows, int columns, int ld, ElementType type) {
  if (rows <= 0 || columns <= 0) return 0;
  std::uint64_t elements = 0;
  if (__builtin_mul_overflow(std::uint64_t(columns - 1), std::uint64_t(ld < 0 ? 0 : ld), &elements) ||
      __builtin_add_overflow(elements, std::uint64_t(rows), &elements) ||
      __builtin_mul_overflow(elements, std::uint64_t(element_bytes(type)), &elements))
    return UINT64_MAX;
  return elements;
}

}  // namespace gpubroker::sim
