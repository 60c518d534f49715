// Tests of the sim's cuBLAS (sim/cublas.cc), called through a CublasTable resolved with dlsym
// from libgpubroker-sim.so, as the broker calls it (tests/sim/sim_fixture.h).
//
// Results are compared with double-precision loops over the same input values (inputs are drawn
// already representable in their element type), within a tolerance for the output type's
// rounding and float accumulation.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <thread>
#include <vector>

#include "gpubroker/cuda/cublas_api.h"
#include "gpubroker/cuda/driver_api.h"
#include "sim_fixture.h"

using namespace gpubroker::cuda;
using namespace sim_fixture;

namespace {

// ---- Element values ----------------------------------------------------------------------------

std::size_t element_size(cudaDataType type) { return type == CUDA_R_32F ? 4 : 2; }

// The bfloat16 nearest to `value` (ties to even), chosen between the two truncations around it.
std::uint16_t to_bfloat16(double value) {
  const auto f = static_cast<float>(value);  // exact for the values the tests use
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const std::uint32_t below = bits & 0xffff0000u;
  const std::uint32_t above = below + 0x10000u;
  float low;
  float high;
  std::memcpy(&low, &below, 4);
  std::memcpy(&high, &above, 4);
  const double to_low = std::fabs(double(f) - low);
  const double to_high = std::fabs(double(high) - f);
  if (to_low < to_high || (to_low == to_high && ((below >> 16) & 1u) == 0)) return static_cast<std::uint16_t>(below >> 16);
  return static_cast<std::uint16_t>(above >> 16);
}

void encode(cudaDataType type, double value, unsigned char* out) {
  if (type == CUDA_R_32F) {
    const auto f = static_cast<float>(value);
    std::memcpy(out, &f, 4);
  } else if (type == CUDA_R_16F) {
    const auto h = static_cast<_Float16>(value);  // the compiler's IEEE binary16, round to nearest even
    std::memcpy(out, &h, 2);
  } else {
    const std::uint16_t b = to_bfloat16(value);
    std::memcpy(out, &b, 2);
  }
}

double decode(cudaDataType type, const unsigned char* in) {
  if (type == CUDA_R_32F) {
    float f;
    std::memcpy(&f, in, 4);
    return f;
  }
  if (type == CUDA_R_16F) {
    _Float16 h;
    std::memcpy(&h, in, 2);
    return static_cast<double>(h);
  }
  std::uint16_t b;
  std::memcpy(&b, in, 2);
  const std::uint32_t bits = std::uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The relative rounding of one store in the type.
double type_epsilon(cudaDataType type) {
  return type == CUDA_R_32F ? 1e-6 : type == CUDA_R_16F ? 1e-3 : 8e-3;
}

// A column-major matrix with leading dimension ld as the device sees it, plus its exact values.
struct HostMatrix {
  cudaDataType type = CUDA_R_32F;
  int rows = 0;
  int columns = 0;
  int ld = 0;
  std::vector<unsigned char> bytes;

  HostMatrix(cudaDataType element, int r, int c, int leading, unsigned seed) : type(element), rows(r), columns(c), ld(leading) {
    bytes.resize(std::size_t(std::max(1, ld)) * std::size_t(std::max(1, columns)) * element_size(type));
    std::uint32_t state = seed * 2654435761u + 12345u;
    for (std::size_t i = 0; i < bytes.size() / element_size(type); ++i) {
      state = state * 1664525u + 1013904223u;
      const double value = double(int(state >> 20) % 2001 - 1000) / 1000.0;  // [-1, 1]
      encode(type, value, bytes.data() + i * element_size(type));
    }
  }
  [[nodiscard]] double at(int row, int column) const {
    return decode(type, bytes.data() + (std::size_t(column) * std::size_t(ld) + std::size_t(row)) * element_size(type));
  }
  [[nodiscard]] std::size_t size() const { return bytes.size(); }
};

// Checks, when the test's locals are gone, that every live count is back where it was.
struct NothingLeft {
  const GpubrokerSimCounters before = counters();
  NothingLeft() = default;
  NothingLeft(const NothingLeft&) = delete;
  NothingLeft& operator=(const NothingLeft&) = delete;
  ~NothingLeft() { require_nothing_left(before); }
};

// ---- Device memory -----------------------------------------------------------------------------

struct DeviceBuffer {
  CUdeviceptr pointer = 0;
  std::size_t bytes = 0;
  explicit DeviceBuffer(std::size_t size) : bytes(size) {
    REQUIRE(sim().cu.mem_alloc(&pointer, size) == CUDA_SUCCESS);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { CHECK(sim().cu.mem_free(pointer) == CUDA_SUCCESS); }
  template <class T = void>
  [[nodiscard]] T* as() const {
    return reinterpret_cast<T*>(pointer);
  }
};

void upload(const DeviceBuffer& device, const void* host, std::size_t bytes, CUstream stream) {
  REQUIRE(sim().cu.memcpy_htod_async(device.pointer, host, bytes, stream) == CUDA_SUCCESS);
}

void download(void* host, const DeviceBuffer& device, std::size_t bytes, CUstream stream) {
  REQUIRE(sim().cu.memcpy_dtoh_async(host, device.pointer, bytes, stream) == CUDA_SUCCESS);
}

// A handle on its own stream, destroyed with it.
struct BlasSession {
  CUstream stream = make_stream();
  cublasHandle_t handle = nullptr;
  BlasSession() {
    REQUIRE(sim().blas.create(&handle) == CUBLAS_STATUS_SUCCESS);
    REQUIRE(sim().blas.set_stream(handle, stream) == CUBLAS_STATUS_SUCCESS);
  }
  BlasSession(const BlasSession&) = delete;
  BlasSession& operator=(const BlasSession&) = delete;
  ~BlasSession() {
    CHECK(sim().blas.destroy(handle) == CUBLAS_STATUS_SUCCESS);
    CHECK(sim().cu.stream_destroy(stream) == CUDA_SUCCESS);
  }
  [[nodiscard]] CUresult synchronize() const { return sim().cu.stream_synchronize(stream); }
};

// ---- The reference -----------------------------------------------------------------------------

double op_at(const HostMatrix& x, bool transpose, int row, int column) {
  return transpose ? x.at(column, row) : x.at(row, column);
}

// Checks every element of C against alpha op(A) op(B) + beta C_before, and that the padding rows
// between ldc and m are untouched.
void check_gemm(const HostMatrix& a, bool ta, const HostMatrix& b, bool tb, const HostMatrix& c_before,
                const HostMatrix& c_after, int m, int n, int k, double alpha, double beta) {
  int wrong = 0;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      double sum = 0.0;
      double magnitude = 0.0;
      for (int p = 0; p < k; ++p) {
        const double term = op_at(a, ta, i, p) * op_at(b, tb, p, j);
        sum += term;
        magnitude += std::fabs(term);
      }
      const double expected = alpha * sum + (beta != 0.0 ? beta * c_before.at(i, j) : 0.0);
      const double scale = std::fabs(alpha) * magnitude + (beta != 0.0 ? std::fabs(beta * c_before.at(i, j)) : 0.0);
      const double tolerance = (type_epsilon(c_after.type) + 1e-5) * scale + 1e-6;
      const double got = c_after.at(i, j);
      if (!(std::fabs(got - expected) <= tolerance) && wrong++ < 5)
        FAIL_CHECK("C(" << i << ", " << j << ") = " << got << ", expected " << expected << " +- " << tolerance);
    }
    for (int i = m; i < c_after.ld; ++i) {
      if (c_after.at(i, j) != c_before.at(i, j) && wrong++ < 5) FAIL_CHECK("padding C(" << i << ", " << j << ") changed");
    }
  }
  CHECK(wrong == 0);
}

// ---- One GEMM through a chosen entry point ---------------------------------------------------------

enum class Entry { kSgemm, kHgemm, kGemmEx, kGemmStridedBatchedEx, kSgemmStridedBatched };

struct GemmConfig {
  const char* name;
  Entry entry;
  cudaDataType a_type;
  cudaDataType b_type;
  cudaDataType c_type;
  cublasComputeType_t compute;
};

// The combinations runners use (ggml): F32 through Sgemm and GemmEx, BF16 in with 32F compute and
// BF16 or F32 out, F16 in/out with 16F compute (and Hgemm), F16 in with F32 out.
const GemmConfig kConfigs[] = {
    {"Sgemm F32", Entry::kSgemm, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F},
    {"GemmEx F32 fast TF32", Entry::kGemmEx, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32},
    {"GemmEx BF16 -> BF16, 32F", Entry::kGemmEx, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F},
    {"GemmEx BF16 -> F32, 32F", Entry::kGemmEx, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F},
    {"GemmEx F16 -> F16, 16F", Entry::kGemmEx, CUDA_R_16F, CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_16F},
    {"GemmEx F16 -> F32, 32F", Entry::kGemmEx, CUDA_R_16F, CUDA_R_16F, CUDA_R_32F, CUBLAS_COMPUTE_32F},
    {"Hgemm F16", Entry::kHgemm, CUDA_R_16F, CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_16F},
    {"GemmStridedBatchedEx BF16 -> F32, 32F", Entry::kGemmStridedBatchedEx, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_32F,
     CUBLAS_COMPUTE_32F},
    {"SgemmStridedBatched F32", Entry::kSgemmStridedBatched, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F},
};

// Scalars in the compute type's scalar type: half for 16F compute, float otherwise.
struct Scalar {
  unsigned char bytes[4] = {};
  Scalar(double value, bool half) {
    if (half) encode(CUDA_R_16F, value, bytes);
    else encode(CUDA_R_32F, value, bytes);
  }
};

cublasStatus_t call_gemm(const GemmConfig& config, cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb,
                         int m, int n, int k, const void* alpha, const void* a, int lda, const void* b, int ldb,
                         const void* beta, void* c, int ldc) {
  CublasTable& blas = sim().blas;
  switch (config.entry) {
    case Entry::kSgemm:
      return blas.sgemm(handle, ta, tb, m, n, k, static_cast<const float*>(alpha), static_cast<const float*>(a), lda,
                        static_cast<const float*>(b), ldb, static_cast<const float*>(beta), static_cast<float*>(c), ldc);
    case Entry::kHgemm:
      return blas.hgemm(handle, ta, tb, m, n, k, static_cast<const HalfBits*>(alpha), static_cast<const HalfBits*>(a),
                        lda, static_cast<const HalfBits*>(b), ldb, static_cast<const HalfBits*>(beta),
                        static_cast<HalfBits*>(c), ldc);
    case Entry::kGemmEx:
      return blas.gemm_ex(handle, ta, tb, m, n, k, alpha, a, config.a_type, lda, b, config.b_type, ldb, beta, c,
                          config.c_type, ldc, config.compute, CUBLAS_GEMM_DEFAULT_TENSOR_OP);
    case Entry::kGemmStridedBatchedEx:  // a batch of one, strides that would matter for more
      return blas.gemm_strided_batched_ex(handle, ta, tb, m, n, k, alpha, a, config.a_type, lda, 1 << 20, b,
                                          config.b_type, ldb, 1 << 20, beta, c, config.c_type, ldc, 1 << 20, 1,
                                          config.compute, CUBLAS_GEMM_DEFAULT);
    case Entry::kSgemmStridedBatched:
      return blas.sgemm_strided_batched(handle, ta, tb, m, n, k, static_cast<const float*>(alpha),
                                        static_cast<const float*>(a), lda, 1 << 20, static_cast<const float*>(b), ldb,
                                        1 << 20, static_cast<const float*>(beta), static_cast<float*>(c), ldc, 1 << 20, 1);
  }
  return CUBLAS_STATUS_INTERNAL_ERROR;
}

struct Shape {
  int m;
  int n;
  int k;
};

}  // namespace

TEST_CASE("every GEMM entry point, type combination, transpose and odd size matches a double reference",
          "[sim][cublas][gemm]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  BlasSession session;
  const Shape shapes[] = {{1, 1, 1}, {7, 1, 33}, {33, 100, 7}, {100, 7, 33}, {1, 33, 100}, {16, 16, 0}};
  const cublasOperation_t operations[][2] = {
      {CUBLAS_OP_N, CUBLAS_OP_N}, {CUBLAS_OP_T, CUBLAS_OP_N}, {CUBLAS_OP_N, CUBLAS_OP_T}, {CUBLAS_OP_T, CUBLAS_OP_T},
      {CUBLAS_OP_C, CUBLAS_OP_N}};
  std::uint64_t gemms = 0;
  unsigned seed = 1;
  for (const GemmConfig& config : kConfigs) {
    const bool half_scalars = config.compute == CUBLAS_COMPUTE_16F;
    for (const auto& operation : operations) {
      for (const Shape& shape : shapes) {
        for (const double beta : {-0.5, 0.0}) {
          const double alpha = 1.5;
          const bool ta = operation[0] != CUBLAS_OP_N;
          const bool tb = operation[1] != CUBLAS_OP_N;
          INFO(config.name << " op " << operation[0] << "," << operation[1] << " m " << shape.m << " n " << shape.n
                           << " k " << shape.k << " beta " << beta);
          const int a_rows = ta ? shape.k : shape.m;
          const int a_columns = ta ? shape.m : shape.k;
          const int b_rows = tb ? shape.n : shape.k;
          const int b_columns = tb ? shape.k : shape.n;
          HostMatrix a(config.a_type, a_rows, a_columns, a_rows + 3, seed++);
          HostMatrix b(config.b_type, b_rows, b_columns, b_rows + 2, seed++);
          HostMatrix c(config.c_type, shape.m, shape.n, shape.m + 5, seed++);
          if (beta == 0.0) {  // C must not be read: NaN there must not reach the result
            for (int j = 0; j < shape.n; ++j)
              for (int i = 0; i < shape.m; ++i)
                encode(config.c_type, std::numeric_limits<double>::quiet_NaN(),
                       c.bytes.data() + (std::size_t(j) * std::size_t(c.ld) + std::size_t(i)) * element_size(c.type));
          }
          HostMatrix result = c;
          DeviceBuffer da(a.size());
          DeviceBuffer db(b.size());
          DeviceBuffer dc(c.size());
          upload(da, a.bytes.data(), a.size(), session.stream);
          upload(db, b.bytes.data(), b.size(), session.stream);
          upload(dc, c.bytes.data(), c.size(), session.stream);
          const Scalar alpha_value(alpha, half_scalars);
          const Scalar beta_value(beta, half_scalars);
          REQUIRE(call_gemm(config, session.handle, operation[0], operation[1], shape.m, shape.n, shape.k,
                            alpha_value.bytes, da.as(), a.ld, db.as(), b.ld, beta_value.bytes, dc.as(), c.ld) ==
                  CUBLAS_STATUS_SUCCESS);
          ++gemms;
          download(result.bytes.data(), dc, result.size(), session.stream);
          REQUIRE(session.synchronize() == CUDA_SUCCESS);
          check_gemm(a, ta, b, tb, c, result, shape.m, shape.n, shape.k, alpha, beta);
        }
      }
    }
  }
  CHECK(counters().gemms_run == nothing_left.before.gemms_run + gemms);
}

TEST_CASE("strided batched GEMMs compute every member at its stride", "[sim][cublas][gemm][batched]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  BlasSession session;
  CublasTable& blas = sim().blas;
  const int m = 7;
  const int n = 5;
  const int k = 9;
  const int batch = 3;
  for (cudaDataType type : {CUDA_R_32F, CUDA_R_16BF, CUDA_R_16F}) {
    INFO("type " << type);
    const std::size_t element = element_size(type);
    // Members at strides larger than a matrix; op(A) = A^T (k x m stored), op(B) = B (k x n).
    const int lda = k + 1;
    const int ldb = k + 2;
    const int ldc = m + 1;
    const long long stride_a = lda * m + 11;
    const long long stride_b = ldb * n + 3;
    const long long stride_c = ldc * n + 7;
    std::vector<HostMatrix> as;
    std::vector<HostMatrix> bs;
    std::vector<HostMatrix> cs;
    std::vector<unsigned char> a_all(std::size_t(stride_a) * batch * element);
    std::vector<unsigned char> b_all(std::size_t(stride_b) * batch * element);
    std::vector<unsigned char> c_all(std::size_t(stride_c) * batch * 4);  // F32 out
    for (int i = 0; i < batch; ++i) {
      as.emplace_back(type, k, m, lda, 100 + i);
      bs.emplace_back(type, k, n, ldb, 200 + i);
      cs.emplace_back(CUDA_R_32F, m, n, ldc, 300 + i);
      std::memcpy(a_all.data() + std::size_t(stride_a) * i * element, as.back().bytes.data(), as.back().size());
      std::memcpy(b_all.data() + std::size_t(stride_b) * i * element, bs.back().bytes.data(), bs.back().size());
      std::memcpy(c_all.data() + std::size_t(stride_c) * i * 4, cs.back().bytes.data(), cs.back().size());
    }
    DeviceBuffer da(a_all.size());
    DeviceBuffer db(b_all.size());
    DeviceBuffer dc(c_all.size());
    upload(da, a_all.data(), a_all.size(), session.stream);
    upload(db, b_all.data(), b_all.size(), session.stream);
    upload(dc, c_all.data(), c_all.size(), session.stream);
    const float alpha = 0.75f;
    const float beta = 2.0f;
    if (type == CUDA_R_32F) {
      REQUIRE(blas.sgemm_strided_batched(session.handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da.as<float>(), lda,
                                         stride_a, db.as<float>(), ldb, stride_b, &beta, dc.as<float>(), ldc, stride_c,
                                         batch) == CUBLAS_STATUS_SUCCESS);
    } else {
      REQUIRE(blas.gemm_strided_batched_ex(session.handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da.as(), type,
                                           lda, stride_a, db.as(), type, ldb, stride_b, &beta, dc.as(), CUDA_R_32F, ldc,
                                           stride_c, batch, CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT_TENSOR_OP) == CUBLAS_STATUS_SUCCESS);
    }
    std::vector<unsigned char> out(c_all.size());
    download(out.data(), dc, out.size(), session.stream);
    REQUIRE(session.synchronize() == CUDA_SUCCESS);
    for (int i = 0; i < batch; ++i) {
      INFO("member " << i);
      HostMatrix result = cs[std::size_t(i)];
      std::memcpy(result.bytes.data(), out.data() + std::size_t(stride_c) * i * 4, result.size());
      check_gemm(as[std::size_t(i)], true, bs[std::size_t(i)], false, cs[std::size_t(i)], result, m, n, k, alpha, beta);
    }
    // The gap after each member's C is untouched.
    for (int i = 0; i < batch; ++i) {
      const std::size_t gap = std::size_t(stride_c) * i * 4 + cs[0].size();
      CHECK(std::memcmp(out.data() + gap, c_all.data() + gap, std::size_t(stride_c) * 4 - cs[0].size()) == 0);
    }
  }
}

TEST_CASE("pointer-array GEMMs read their arrays from device memory when they run", "[sim][cublas][gemm][batched]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  BlasSession session;
  CublasTable& blas = sim().blas;
  const int m = 33;
  const int n = 7;
  const int k = 20;
  const int batch = 4;
  for (bool ex : {false, true}) {
    const cudaDataType type = ex ? CUDA_R_16F : CUDA_R_32F;
    INFO((ex ? "cublasGemmBatchedEx F16 -> F32" : "cublasSgemmBatched"));
    std::vector<HostMatrix> as;
    std::vector<HostMatrix> bs;
    std::vector<HostMatrix> cs;
    std::vector<std::unique_ptr<DeviceBuffer>> buffers;
    std::vector<CUdeviceptr> a_pointers;
    std::vector<CUdeviceptr> b_pointers;
    std::vector<CUdeviceptr> c_pointers;
    for (int i = 0; i < batch; ++i) {
      as.emplace_back(type, m, k, m, 10 + i);   // op N
      bs.emplace_back(type, n, k, n + 1, 20 + i);  // op T: B is n x k
      cs.emplace_back(CUDA_R_32F, m, n, m + 2, 30 + i);
      for (const HostMatrix* matrix : {&as.back(), &bs.back(), &cs.back()}) {
        buffers.push_back(std::make_unique<DeviceBuffer>(matrix->size()));
        upload(*buffers.back(), matrix->bytes.data(), matrix->size(), session.stream);
      }
      a_pointers.push_back(buffers[buffers.size() - 3]->pointer);
      b_pointers.push_back(buffers[buffers.size() - 2]->pointer);
      c_pointers.push_back(buffers[buffers.size() - 1]->pointer);
    }
    // Member 1 and 3 share A (as ggml's broadcast does).
    a_pointers[3] = a_pointers[1];
    as[3] = as[1];
    DeviceBuffer arrays(3 * batch * sizeof(CUdeviceptr));
    const auto a_array = reinterpret_cast<void* const*>(arrays.pointer);
    const auto b_array = reinterpret_cast<void* const*>(arrays.pointer + batch * sizeof(CUdeviceptr));
    const auto c_array = reinterpret_cast<void* const*>(arrays.pointer + 2 * batch * sizeof(CUdeviceptr));

    // The arrays are written on the stream after the GEMM is queued behind a closed gate: the
    // GEMM must read what is in device memory when it runs.
    Gate gate;
    REQUIRE(sim().cu.launch_host_func(session.stream, &Gate::wait, &gate) == CUDA_SUCCESS);
    upload(arrays, a_pointers.data(), batch * sizeof(CUdeviceptr), session.stream);
    REQUIRE(sim().cu.memcpy_htod_async(arrays.pointer + batch * sizeof(CUdeviceptr), b_pointers.data(),
                                       batch * sizeof(CUdeviceptr), session.stream) == CUDA_SUCCESS);
    REQUIRE(sim().cu.memcpy_htod_async(arrays.pointer + 2 * batch * sizeof(CUdeviceptr), c_pointers.data(),
                                       batch * sizeof(CUdeviceptr), session.stream) == CUDA_SUCCESS);
    const float alpha = -1.25f;
    const float beta = 0.5f;
    if (ex) {
      REQUIRE(blas.gemm_batched_ex(session.handle, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha, a_array, type, m,
                                   b_array, type, n + 1, &beta, c_array, CUDA_R_32F, m + 2, batch, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT_TENSOR_OP) == CUBLAS_STATUS_SUCCESS);
    } else {
      REQUIRE(blas.sgemm_batched(session.handle, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha,
                                 reinterpret_cast<const float* const*>(a_array), m,
                                 reinterpret_cast<const float* const*>(b_array), n + 1, &beta,
                                 reinterpret_cast<float* const*>(c_array), m + 2, batch) == CUBLAS_STATUS_SUCCESS);
    }
    gate.open.store(true, std::memory_order_release);
    REQUIRE(session.synchronize() == CUDA_SUCCESS);
    for (int i = 0; i < batch; ++i) {
      INFO("member " << i);
      HostMatrix result = cs[std::size_t(i)];
      REQUIRE(sim().cu.memcpy_dtoh_async(result.bytes.data(), c_pointers[std::size_t(i)], result.size(),
                                         session.stream) == CUDA_SUCCESS);
      REQUIRE(session.synchronize() == CUDA_SUCCESS);
      check_gemm(as[std::size_t(i)], false, bs[std::size_t(i)], true, cs[std::size_t(i)], result, m, n, k, alpha, beta);
    }
    buffers.clear();
  }
}

TEST_CASE("a bad pointer inside a device pointer array faults the stream instead of crashing",
          "[sim][cublas][gemm][batched][fault]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  CublasTable& blas = sim().blas;
  const int size = 8;
  DeviceBuffer matrix(size * size * sizeof(float));
  DeviceBuffer arrays(3 * 2 * sizeof(CUdeviceptr));
  const float alpha = 1.0f;
  const float beta = 0.0f;
  std::vector<float> stack_memory(size * size);  // host memory, not device memory
  const CUdeviceptr bad_pointers[] = {0, 0x10, reinterpret_cast<CUdeviceptr>(stack_memory.data()),
                                      matrix.pointer + sizeof(float)};  // the last runs past its allocation
  for (CUdeviceptr bad : bad_pointers) {
    INFO("bad pointer " << bad);
    BlasSession session;
    const CUdeviceptr pointers[6] = {matrix.pointer, bad, matrix.pointer, matrix.pointer, matrix.pointer,
                                     matrix.pointer};
    upload(arrays, pointers, sizeof pointers, session.stream);
    const auto a_array = reinterpret_cast<const float* const*>(arrays.pointer);
    const auto b_array = reinterpret_cast<const float* const*>(arrays.pointer + 2 * sizeof(CUdeviceptr));
    const auto c_array = reinterpret_cast<float* const*>(arrays.pointer + 4 * sizeof(CUdeviceptr));
    const std::uint64_t gemms_before = counters().gemms_run;
    REQUIRE(blas.sgemm_batched(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, size, size, size, &alpha, a_array, size,
                               b_array, size, &beta, c_array, size, 2) == CUBLAS_STATUS_SUCCESS);
    CHECK(session.synchronize() == CUDA_ERROR_ILLEGAL_ADDRESS);
    CHECK(counters().gemms_run == gemms_before);
    // The stream's error is sticky, as after a GPU fault.
    CHECK(blas.sgemm_batched(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, size, size, size, &alpha, a_array, size,
                             b_array, size, &beta, c_array, size, 2) == CUBLAS_STATUS_EXECUTION_FAILED);
  }

  // Arrays that are not in device memory are refused at the call.
  BlasSession session;
  const float* host_array[2] = {matrix.as<float>(), matrix.as<float>()};
  float* host_c_array[2] = {matrix.as<float>(), matrix.as<float>()};
  CHECK(blas.sgemm_batched(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, size, size, size, &alpha, host_array, size,
                           host_array, size, &beta, host_c_array, size, 2) == CUBLAS_STATUS_INVALID_VALUE);
  // So are direct operands outside device memory, and strided batches that run past an allocation.
  CHECK(blas.sgemm(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, size, size, size, &alpha, stack_memory.data(), size,
                   matrix.as<float>(), size, &beta, matrix.as<float>(), size) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.sgemm_strided_batched(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, size, size, size, &alpha,
                                   matrix.as<float>(), size, size * size, matrix.as<float>(), size, 0, &beta,
                                   matrix.as<float>(), size, 0, 2) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(session.synchronize() == CUDA_SUCCESS);
}

TEST_CASE("device pointer mode reads alpha and beta from device memory in stream order", "[sim][cublas][gemm]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  BlasSession session;
  CublasTable& blas = sim().blas;
  cublasPointerMode_t mode = CUBLAS_POINTER_MODE_DEVICE;
  REQUIRE(blas.get_pointer_mode(session.handle, &mode) == CUBLAS_STATUS_SUCCESS);
  CHECK(mode == CUBLAS_POINTER_MODE_HOST);
  REQUIRE(blas.set_pointer_mode(session.handle, CUBLAS_POINTER_MODE_DEVICE) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(blas.get_pointer_mode(session.handle, &mode) == CUBLAS_STATUS_SUCCESS);
  CHECK(mode == CUBLAS_POINTER_MODE_DEVICE);

  const int m = 5;
  const int n = 3;
  const int k = 4;
  HostMatrix a(CUDA_R_32F, m, k, m, 1);
  HostMatrix b(CUDA_R_32F, k, n, k, 2);
  HostMatrix c(CUDA_R_32F, m, n, m, 3);
  DeviceBuffer da(a.size());
  DeviceBuffer db(b.size());
  DeviceBuffer dc(c.size());
  DeviceBuffer scalars(2 * sizeof(float));
  upload(da, a.bytes.data(), a.size(), session.stream);
  upload(db, b.bytes.data(), b.size(), session.stream);
  HostMatrix first = c;
  HostMatrix second = c;
  // Two GEMMs, each after its own copy of (alpha, beta): each sees the values in stream order.
  const float scalars_first[2] = {2.0f, 0.0f};
  const float scalars_second[2] = {-1.0f, 1.0f};
  upload(dc, c.bytes.data(), c.size(), session.stream);
  upload(scalars, scalars_first, sizeof scalars_first, session.stream);
  REQUIRE(blas.sgemm(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, scalars.as<float>(), da.as<float>(), m,
                     db.as<float>(), k, scalars.as<float>() + 1, dc.as<float>(), m) == CUBLAS_STATUS_SUCCESS);
  download(first.bytes.data(), dc, c.size(), session.stream);
  upload(scalars, scalars_second, sizeof scalars_second, session.stream);
  REQUIRE(blas.sgemm(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, scalars.as<float>(), da.as<float>(), m,
                     db.as<float>(), k, scalars.as<float>() + 1, dc.as<float>(), m) == CUBLAS_STATUS_SUCCESS);
  download(second.bytes.data(), dc, c.size(), session.stream);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  check_gemm(a, false, b, false, c, first, m, n, k, 2.0, 0.0);
  check_gemm(a, false, b, false, first, second, m, n, k, -1.0, 1.0);

  // Scalars that are not in device memory are refused at the call.
  const float host_alpha = 1.0f;
  CHECK(blas.sgemm(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &host_alpha, da.as<float>(), m, db.as<float>(),
                   k, &host_alpha, dc.as<float>(), m) == CUBLAS_STATUS_INVALID_VALUE);
}

TEST_CASE("a GEMM after an async copy on the same stream sees the copied data", "[sim][cublas][stream]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  BlasSession session;
  const int size = 16;
  HostMatrix a(CUDA_R_32F, size, size, size, 5);
  HostMatrix b(CUDA_R_32F, size, size, size, 6);
  HostMatrix zero(CUDA_R_32F, size, size, size, 7);
  std::fill(zero.bytes.begin(), zero.bytes.end(), 0);
  DeviceBuffer da(a.size());
  DeviceBuffer db(b.size());
  DeviceBuffer dc(zero.size());
  REQUIRE(sim().cu.memset_d8_async(da.pointer, 0, da.bytes, session.stream) == CUDA_SUCCESS);
  REQUIRE(sim().cu.memset_d8_async(db.pointer, 0, db.bytes, session.stream) == CUDA_SUCCESS);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  // Copies, GEMM and read-back all queued before any of them runs.
  Gate gate;
  REQUIRE(sim().cu.launch_host_func(session.stream, &Gate::wait, &gate) == CUDA_SUCCESS);
  upload(da, a.bytes.data(), a.size(), session.stream);
  upload(db, b.bytes.data(), b.size(), session.stream);
  const float alpha = 1.0f;
  const float beta = 0.0f;
  REQUIRE(sim().blas.sgemm(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, size, size, size, &alpha, da.as<float>(), size,
                           db.as<float>(), size, &beta, dc.as<float>(), size) == CUBLAS_STATUS_SUCCESS);
  HostMatrix result = zero;
  download(result.bytes.data(), dc, result.size(), session.stream);
  CHECK(sim().cu.stream_query(session.stream) == CUDA_ERROR_NOT_READY);
  gate.open.store(true, std::memory_order_release);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  check_gemm(a, false, b, false, zero, result, size, size, size, 1.0, 0.0);
}

TEST_CASE("stream capture records a GEMM without running it and each graph launch runs it", "[sim][cublas][graph]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  DriverTable& cu = sim().cu;
  BlasSession session;
  const int m = 9;
  const int n = 6;
  const int k = 5;
  HostMatrix a(CUDA_R_16BF, k, m, k, 8);  // op T
  HostMatrix b(CUDA_R_16BF, k, n, k, 9);
  HostMatrix zero(CUDA_R_32F, m, n, m, 10);
  std::fill(zero.bytes.begin(), zero.bytes.end(), 0);
  DeviceBuffer da(a.size());
  DeviceBuffer db(b.size());
  DeviceBuffer dc(zero.size());
  upload(da, a.bytes.data(), a.size(), session.stream);
  upload(db, b.bytes.data(), b.size(), session.stream);
  upload(dc, zero.bytes.data(), zero.size(), session.stream);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);

  const float alpha = 1.0f;
  const float beta = 1.0f;  // each replay adds A^T B once more
  const std::uint64_t gemms_before = counters().gemms_run;
  REQUIRE(cu.stream_begin_capture(session.stream, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_SUCCESS);
  REQUIRE(sim().blas.gemm_ex(session.handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da.as(), CUDA_R_16BF, k,
                             db.as(), CUDA_R_16BF, k, &beta, dc.as(), CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT_TENSOR_OP) == CUBLAS_STATUS_SUCCESS);
  CUgraph graph = nullptr;
  REQUIRE(cu.stream_end_capture(session.stream, &graph) == CUDA_SUCCESS);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  CHECK(counters().gemms_run == gemms_before);
  HostMatrix result = zero;
  download(result.bytes.data(), dc, result.size(), session.stream);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  CHECK(result.bytes == zero.bytes);

  CUgraphExec exec = nullptr;
  REQUIRE(cu.graph_instantiate(&exec, graph, 0) == CUDA_SUCCESS);
  REQUIRE(cu.graph_launch(exec, session.stream) == CUDA_SUCCESS);
  download(result.bytes.data(), dc, result.size(), session.stream);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  CHECK(counters().gemms_run == gemms_before + 1);
  check_gemm(a, true, b, false, zero, result, m, n, k, 1.0, 0.0);
  const HostMatrix once = result;
  REQUIRE(cu.graph_launch(exec, session.stream) == CUDA_SUCCESS);
  download(result.bytes.data(), dc, result.size(), session.stream);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  CHECK(counters().gemms_run == gemms_before + 2);
  check_gemm(a, true, b, false, once, result, m, n, k, 1.0, 1.0);

  // A capture may record GEMMs on placeholder pointers (a memory-fit pass): recorded, never run.
  REQUIRE(cu.stream_begin_capture(session.stream, CU_STREAM_CAPTURE_MODE_GLOBAL) == CUDA_SUCCESS);
  CHECK(sim().blas.sgemm(session.handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha,
                         reinterpret_cast<const float*>(0x1000), m, reinterpret_cast<const float*>(0x2000), k, &beta,
                         reinterpret_cast<float*>(0x3000), m) == CUBLAS_STATUS_SUCCESS);
  CUgraph placeholder = nullptr;
  REQUIRE(cu.stream_end_capture(session.stream, &placeholder) == CUDA_SUCCESS);
  REQUIRE(cu.graph_destroy(placeholder) == CUDA_SUCCESS);
  CHECK(session.synchronize() == CUDA_SUCCESS);

  REQUIRE(cu.graph_exec_destroy(exec) == CUDA_SUCCESS);
  REQUIRE(cu.graph_destroy(graph) == CUDA_SUCCESS);
}

TEST_CASE("batched triangular solves match op(A) X = alpha B for every side, fill, transpose and diagonal",
          "[sim][cublas][trsm]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  BlasSession session;
  const int m = 7;
  const int n = 5;
  const int batch = 2;
  const float alpha = 1.5f;
  for (cublasSideMode_t side : {CUBLAS_SIDE_LEFT, CUBLAS_SIDE_RIGHT}) {
    for (cublasFillMode_t fill : {CUBLAS_FILL_MODE_LOWER, CUBLAS_FILL_MODE_UPPER}) {
      for (cublasOperation_t trans : {CUBLAS_OP_N, CUBLAS_OP_T}) {
        for (cublasDiagType_t diag : {CUBLAS_DIAG_NON_UNIT, CUBLAS_DIAG_UNIT}) {
          INFO("side " << side << " fill " << fill << " trans " << trans << " diag " << diag);
          const int size = side == CUBLAS_SIDE_LEFT ? m : n;
          const int lda = size + 2;
          const int ldb = m + 3;
          std::vector<std::vector<float>> as;
          std::vector<std::vector<float>> bs;
          std::vector<std::unique_ptr<DeviceBuffer>> buffers;
          CUdeviceptr pointers[2 * batch];
          for (int i = 0; i < batch; ++i) {
            // Well conditioned: a diagonal of 2..3 and small off-diagonal values; the triangle not
            // referenced (and a unit diagonal) hold NaN, which must never be read.
            std::vector<float> a(std::size_t(lda) * size, std::numeric_limits<float>::quiet_NaN());
            for (int column = 0; column < size; ++column) {
              for (int row = 0; row < size; ++row) {
                const bool referenced = fill == CUBLAS_FILL_MODE_LOWER ? row > column : row < column;
                if (referenced) a[std::size_t(column) * lda + row] = float((row * 7 + column * 3 + i) % 11 - 5) / 25.0f;
                if (row == column && diag == CUBLAS_DIAG_NON_UNIT)
                  a[std::size_t(column) * lda + row] = 2.0f + float((row + i) % 5) / 4.0f;
              }
            }
            std::vector<float> b(std::size_t(ldb) * n, -7.0f);
            for (int column = 0; column < n; ++column)
              for (int row = 0; row < m; ++row) b[std::size_t(column) * ldb + row] = float((row * 5 + column + i) % 9 - 4) / 4.0f;
            buffers.push_back(std::make_unique<DeviceBuffer>(a.size() * sizeof(float)));
            upload(*buffers.back(), a.data(), a.size() * sizeof(float), session.stream);
            pointers[i] = buffers.back()->pointer;
            buffers.push_back(std::make_unique<DeviceBuffer>(b.size() * sizeof(float)));
            upload(*buffers.back(), b.data(), b.size() * sizeof(float), session.stream);
            pointers[batch + i] = buffers.back()->pointer;
            as.push_back(std::move(a));
            bs.push_back(std::move(b));
          }
          DeviceBuffer arrays(sizeof pointers);
          upload(arrays, pointers, sizeof pointers, session.stream);
          REQUIRE(sim().blas.strsm_batched(session.handle, side, fill, trans, diag, m, n, &alpha,
                                           reinterpret_cast<const float* const*>(arrays.pointer), lda,
                                           reinterpret_cast<float* const*>(arrays.pointer + batch * sizeof(CUdeviceptr)),
                                           ldb, batch) == CUBLAS_STATUS_SUCCESS);
          for (int i = 0; i < batch; ++i) {
            std::vector<float> x(bs[std::size_t(i)].size());
            REQUIRE(sim().cu.memcpy_dtoh_async(x.data(), pointers[batch + i], x.size() * sizeof(float),
                                               session.stream) == CUDA_SUCCESS);
            REQUIRE(session.synchronize() == CUDA_SUCCESS);
            const std::vector<float>& a = as[std::size_t(i)];
            const std::vector<float>& b = bs[std::size_t(i)];
            // op(A)(r, c) as the solve sees it: the referenced triangle, 1 on a unit diagonal, 0 elsewhere.
            auto op_a = [&](int r, int c) -> double {
              const int row = trans == CUBLAS_OP_N ? r : c;
              const int column = trans == CUBLAS_OP_N ? c : r;
              if (row == column) return diag == CUBLAS_DIAG_UNIT ? 1.0 : a[std::size_t(column) * lda + row];
              const bool referenced = fill == CUBLAS_FILL_MODE_LOWER ? row > column : row < column;
              return referenced ? a[std::size_t(column) * lda + row] : 0.0;
            };
            int wrong = 0;
            for (int column = 0; column < n; ++column) {
              for (int row = 0; row < m; ++row) {
                double product = 0.0;  // (op(A) X) or (X op(A)) at (row, column)
                if (side == CUBLAS_SIDE_LEFT) {
                  for (int p = 0; p < m; ++p) product += op_a(row, p) * x[std::size_t(column) * ldb + p];
                } else {
                  for (int p = 0; p < n; ++p) product += x[std::size_t(p) * ldb + row] * op_a(p, column);
                }
                const double expected = double(alpha) * b[std::size_t(column) * ldb + row];
                if (!(std::fabs(product - expected) <= 1e-4 * (1.0 + std::fabs(expected))) && wrong++ < 5)
                  FAIL_CHECK("member " << i << " (" << row << ", " << column << "): " << product << " vs " << expected);
              }
              for (int row = m; row < ldb; ++row) CHECK(x[std::size_t(column) * ldb + row] == -7.0f);
            }
            CHECK(wrong == 0);
          }
          buffers.clear();
        }
      }
    }
  }
}

TEST_CASE("arguments are checked as cuBLAS checks them", "[sim][cublas][errors]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  CublasTable& blas = sim().blas;
  BlasSession session;
  cublasHandle_t h = session.handle;
  DeviceBuffer memory(64 * 64 * sizeof(float));
  const auto* a = memory.as<float>();
  auto* c = memory.as<float>();
  const float one = 1.0f;
  const auto N = CUBLAS_OP_N;
  const auto T = CUBLAS_OP_T;

  // Handles.
  CHECK(blas.sgemm(nullptr, N, N, 4, 4, 4, &one, a, 4, a, 4, &one, c, 4) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(blas.sgemm(reinterpret_cast<cublasHandle_t>(0x1239), N, N, 4, 4, 4, &one, a, 4, a, 4, &one, c, 4) ==
        CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(blas.create(nullptr) == CUBLAS_STATUS_INVALID_VALUE);
  cublasHandle_t destroyed = nullptr;
  REQUIRE(blas.create(&destroyed) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(blas.destroy(destroyed) == CUBLAS_STATUS_SUCCESS);
  CHECK(blas.destroy(destroyed) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(blas.set_stream(destroyed, session.stream) == CUBLAS_STATUS_NOT_INITIALIZED);

  // Shapes and leading dimensions.
  CHECK(blas.sgemm(h, N, N, -1, 4, 4, &one, a, 4, a, 4, &one, c, 4) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.sgemm(h, N, N, 4, -1, 4, &one, a, 4, a, 4, &one, c, 4) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.sgemm(h, N, N, 4, 4, -1, &one, a, 4, a, 4, &one, c, 4) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.sgemm(h, N, N, 4, 4, 8, &one, a, 3, a, 8, &one, c, 4) == CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  CHECK(blas.sgemm(h, T, N, 4, 4, 8, &one, a, 4, a, 8, &one, c, 4) == CUBLAS_STATUS_INVALID_VALUE);  // lda < k
  CHECK(blas.sgemm(h, N, N, 4, 4, 8, &one, a, 4, a, 7, &one, c, 4) == CUBLAS_STATUS_INVALID_VALUE);  // ldb < k
  CHECK(blas.sgemm(h, N, T, 4, 5, 8, &one, a, 4, a, 4, &one, c, 4) == CUBLAS_STATUS_INVALID_VALUE);  // ldb < n
  CHECK(blas.sgemm(h, N, N, 4, 4, 4, &one, a, 4, a, 4, &one, c, 3) == CUBLAS_STATUS_INVALID_VALUE);  // ldc < m
  CHECK(blas.sgemm(h, N, N, 0, 4, 4, &one, a, 0, a, 4, &one, c, 0) == CUBLAS_STATUS_INVALID_VALUE);  // ld < 1
  CHECK(blas.sgemm(h, static_cast<cublasOperation_t>(3), N, 4, 4, 4, &one, a, 4, a, 4, &one, c, 4) ==
        CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.sgemm(h, N, N, 4, 4, 4, nullptr, a, 4, a, 4, &one, c, 4) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.sgemm_strided_batched(h, N, N, 4, 4, 4, &one, a, 4, 16, a, 4, 16, &one, c, 4, 16, -1) ==
        CUBLAS_STATUS_INVALID_VALUE);
  // Empty problems succeed without work.
  const std::uint64_t gemms_before = counters().gemms_run;
  CHECK(blas.sgemm(h, N, N, 0, 4, 4, &one, a, 1, a, 4, &one, c, 1) == CUBLAS_STATUS_SUCCESS);
  CHECK(blas.sgemm_strided_batched(h, N, N, 4, 4, 4, &one, a, 4, 16, a, 4, 16, &one, c, 4, 16, 0) ==
        CUBLAS_STATUS_SUCCESS);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  CHECK(counters().gemms_run == gemms_before);

  // Types and compute types.
  // FP64 is computed with CUBLAS_COMPUTE_64F only (tests/blas_shim_test.cc checks its values).
  CHECK(blas.gemm_ex(h, N, N, 4, 4, 4, &one, a, CUDA_R_64F, 4, a, CUDA_R_64F, 4, &one, c, CUDA_R_64F, 4,
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(blas.gemm_ex(h, N, N, 4, 4, 4, &one, a, CUDA_R_64F, 4, a, CUDA_R_64F, 4, &one, c, CUDA_R_32F, 4,
                     CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(blas.gemm_ex(h, N, N, 4, 4, 4, &one, a, CUDA_R_16F, 4, a, CUDA_R_16F, 4, &one, c, CUDA_R_32F, 4,
                     CUBLAS_COMPUTE_16F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(blas.gemm_ex(h, N, N, 4, 4, 4, &one, a, CUDA_R_16BF, 4, a, CUDA_R_16F, 4, &one, c, CUDA_R_32F, 4,
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(blas.gemm_ex(h, N, N, 4, 4, 4, &one, a, CUDA_R_16BF, 4, a, CUDA_R_16BF, 4, &one, c, CUDA_R_32F, 4,
                     CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED);
  CHECK(blas.gemm_ex(h, N, N, 4, 4, 4, &one, a, CUDA_R_32F, 4, a, CUDA_R_32F, 4, &one, c, CUDA_R_32F, 4,
                     static_cast<cublasComputeType_t>(12345), CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.gemm_ex(h, N, N, 4, 4, 4, &one, a, CUDA_R_32F, 4, a, CUDA_R_32F, 4, &one, c, CUDA_R_32F, 4,
                     CUBLAS_COMPUTE_32F, static_cast<cublasGemmAlgo_t>(50)) == CUBLAS_STATUS_INVALID_VALUE);

  // Triangular solves.
  const float* const* arrays = reinterpret_cast<const float* const*>(memory.pointer);
  float* const* b_arrays = reinterpret_cast<float* const*>(memory.pointer);
  CHECK(blas.strsm_batched(h, static_cast<cublasSideMode_t>(2), CUBLAS_FILL_MODE_LOWER, N, CUBLAS_DIAG_UNIT, 4, 4,
                           &one, arrays, 4, b_arrays, 4, 1) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.strsm_batched(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_FULL, N, CUBLAS_DIAG_UNIT, 4, 4, &one, arrays, 4,
                           b_arrays, 4, 1) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.strsm_batched(h, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, N, CUBLAS_DIAG_UNIT, 8, 4, &one, arrays, 3,
                           b_arrays, 8, 1) == CUBLAS_STATUS_INVALID_VALUE);  // lda < n
  CHECK(blas.strsm_batched(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, N, CUBLAS_DIAG_UNIT, 8, 4, &one, arrays, 8,
                           b_arrays, 7, 1) == CUBLAS_STATUS_INVALID_VALUE);  // ldb < m
  CHECK(blas.strsm_batched(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, N, CUBLAS_DIAG_UNIT, -1, 4, &one, arrays, 8,
                           b_arrays, 8, 1) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.strsm_batched(nullptr, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, N, CUBLAS_DIAG_UNIT, 4, 4, &one, arrays,
                           4, b_arrays, 4, 1) == CUBLAS_STATUS_NOT_INITIALIZED);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
}

TEST_CASE("a handle keeps its stream, math mode, pointer mode and workspace", "[sim][cublas][handle]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  CublasTable& blas = sim().blas;
  cublasHandle_t handle = nullptr;
  REQUIRE(blas.create(&handle) == CUBLAS_STATUS_SUCCESS);
  CHECK(counters().live_cublas_handles == nothing_left.before.live_cublas_handles + 1);
  int version = 0;
  REQUIRE(blas.get_version(handle, &version) == CUBLAS_STATUS_SUCCESS);
  CHECK(version >= 130000);
  CHECK(blas.get_version(handle, nullptr) == CUBLAS_STATUS_INVALID_VALUE);

  CUstream stream = make_stream();
  CUstream got = reinterpret_cast<CUstream>(0x1);
  REQUIRE(blas.get_stream(handle, &got) == CUBLAS_STATUS_SUCCESS);
  CHECK(got == nullptr);
  REQUIRE(blas.set_stream(handle, stream) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(blas.get_stream(handle, &got) == CUBLAS_STATUS_SUCCESS);
  CHECK(got == stream);

  cublasMath_t mode = CUBLAS_PEDANTIC_MATH;
  REQUIRE(blas.get_math_mode(handle, &mode) == CUBLAS_STATUS_SUCCESS);
  CHECK(mode == CUBLAS_DEFAULT_MATH);
  const auto tf32_no_reduction =
      static_cast<cublasMath_t>(CUBLAS_TF32_TENSOR_OP_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  REQUIRE(blas.set_math_mode(handle, tf32_no_reduction) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(blas.get_math_mode(handle, &mode) == CUBLAS_STATUS_SUCCESS);
  CHECK(mode == tf32_no_reduction);
  CHECK(blas.set_math_mode(handle, static_cast<cublasMath_t>(5)) == CUBLAS_STATUS_INVALID_VALUE);
  CHECK(blas.set_pointer_mode(handle, static_cast<cublasPointerMode_t>(2)) == CUBLAS_STATUS_INVALID_VALUE);

  {
    DeviceBuffer workspace(4 << 20);
    CHECK(blas.set_workspace(handle, workspace.as(), workspace.bytes) == CUBLAS_STATUS_SUCCESS);
    CHECK(blas.set_workspace(handle, workspace.as<unsigned char>() + 16, 1024) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(blas.set_workspace(handle, workspace.as(), workspace.bytes + 1) == CUBLAS_STATUS_INVALID_VALUE);
    std::vector<unsigned char> host(4096);
    CHECK(blas.set_workspace(handle, host.data(), host.size()) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(blas.set_workspace(handle, nullptr, 0) == CUBLAS_STATUS_SUCCESS);
  }

  // A GEMM on a stream destroyed meanwhile fails at the call.
  REQUIRE(sim().cu.stream_destroy(stream) == CUDA_SUCCESS);
  DeviceBuffer memory(16 * sizeof(float));
  const float one = 1.0f;
  CHECK(blas.sgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, memory.as<float>(), 2, memory.as<float>(), 2, &one,
                   memory.as<float>(), 2) == CUBLAS_STATUS_EXECUTION_FAILED);
  // Back on the NULL stream of the current context.
  REQUIRE(blas.set_stream(handle, nullptr) == CUBLAS_STATUS_SUCCESS);
  CHECK(blas.sgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, memory.as<float>(), 2, memory.as<float>(), 2, &one,
                   memory.as<float>(), 2) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(sim().cu.ctx_synchronize() == CUDA_SUCCESS);

  REQUIRE(blas.destroy(handle) == CUBLAS_STATUS_SUCCESS);
}

TEST_CASE("every cuBLAS status has a name and a description", "[sim][cublas][errors]") {
  CublasTable& blas = sim().blas;
  const std::pair<cublasStatus_t, const char*> statuses[] = {
      {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS"},
      {CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED"},
      {CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED"},
      {CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE"},
      {CUBLAS_STATUS_ARCH_MISMATCH, "CUBLAS_STATUS_ARCH_MISMATCH"},
      {CUBLAS_STATUS_MAPPING_ERROR, "CUBLAS_STATUS_MAPPING_ERROR"},
      {CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED"},
      {CUBLAS_STATUS_INTERNAL_ERROR, "CUBLAS_STATUS_INTERNAL_ERROR"},
      {CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED"},
      {CUBLAS_STATUS_LICENSE_ERROR, "CUBLAS_STATUS_LICENSE_ERROR"},
  };
  for (const auto& [status, name] : statuses) {
    REQUIRE(blas.get_status_name(status) != nullptr);
    CHECK(std::string(blas.get_status_name(status)) == name);
    REQUIRE(blas.get_status_string(status) != nullptr);
    CHECK(std::string(blas.get_status_string(status)).size() > 3);
  }
  const auto unknown = static_cast<cublasStatus_t>(12345);
  REQUIRE(blas.get_status_name(unknown) != nullptr);
  REQUIRE(blas.get_status_string(unknown) != nullptr);
}

TEST_CASE("a 512 x 512 x 512 FP32 GEMM is fast and right", "[sim][cublas][gemm][speed]") {
  const NothingLeft nothing_left;  // first: checked after every other local is gone
  BlasSession session;
  const int size = 512;
  HostMatrix a(CUDA_R_32F, size, size, size, 41);
  HostMatrix b(CUDA_R_32F, size, size, size, 42);
  HostMatrix c(CUDA_R_32F, size, size, size, 43);
  DeviceBuffer da(a.size());
  DeviceBuffer db(b.size());
  DeviceBuffer dc(c.size());
  upload(da, a.bytes.data(), a.size(), session.stream);
  upload(db, b.bytes.data(), b.size(), session.stream);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(sim().blas.sgemm(session.handle, CUBLAS_OP_T, CUBLAS_OP_N, size, size, size, &alpha, da.as<float>(), size,
                           db.as<float>(), size, &beta, dc.as<float>(), size) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("512^3 FP32 GEMM: " << seconds * 1e3 << " ms");
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
  CHECK(seconds < 0.5);
#endif
  HostMatrix result = c;
  download(result.bytes.data(), dc, result.size(), session.stream);
  REQUIRE(session.synchronize() == CUDA_SUCCESS);
  // A sample of elements against the reference (the full check is the other tests' job).
  for (int sample = 0; sample < 64; ++sample) {
    const int i = (sample * 97) % size;
    const int j = (sample * 61 + 5) % size;
    double expected = 0.0;
    double magnitude = 0.0;
    for (int p = 0; p < size; ++p) {
      expected += a.at(p, i) * b.at(p, j);
      magnitude += std::fabs(a.at(p, i) * b.at(p, j));
    }
    CHECK(std::fabs(result.at(i, j) - expected) <= 2e-6 * magnitude + 1e-6);
  }
}
