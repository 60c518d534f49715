// The cuBLAS shim (libcublas.so.13) against a sim broker: every GEMM form and type/transpose
// combination a runner uses (runner-api-surface.md) checked against a reference computed here in
// double precision, the pointer-array forms with their arrays in device memory, cublasStrsmBatched,
// device pointer mode, the checks the broker makes on every matrix, and the strings and versions;
// the BLAS-1 functions of S and D, of the handle API and the legacy one, against a reference.
//
// Each case runs in a child process (the shims keep one session per process), which prints what
// differs and exits non-zero.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpubroker/sim/float16.h"
#include "tests/support/broker_process.h"
#include "tests/support/broker_ready.h"
#include "tests/support/child_expect.h"

using namespace gpubroker;
using testing::BrokerProcess;
using testing::TempDir;

extern "C" {
int cudaMalloc(void**, std::size_t);
int cudaFree(void*);
int cudaMemcpy(void*, const void*, std::size_t, int);
int cudaDeviceSynchronize();
int cudaStreamCreateWithFlags(void**, unsigned);
int cudaStreamSynchronize(void*);
int cudaStreamCreateWithPriority(void**, unsigned, int);
int cudaStreamGetFlags(void*, unsigned*);
int cudaStreamGetFlags_ptsz(void*, unsigned*);  // the generator's alias of cudaStreamGetFlags
int cudaStreamGetPriority(void*, int*);
int cudaStreamGetAttribute(void*, int, void*);
int cudaStreamSetAttribute(void*, int, const void*);
int cudaDeviceSetCacheConfig(int);
int cudaMallocPitch(void**, std::size_t*, std::size_t, std::size_t);
int cudaMemcpy2D(void*, std::size_t, const void*, std::size_t, std::size_t, std::size_t, int);
int cudaMemset2D(void*, std::size_t, int, std::size_t, std::size_t);
int cudaDeviceGetCacheConfig(int*);
int cudaGetLastError();
int cudaStreamDestroy(void*);
int cudaEventCreate(void**);
int cudaEventRecordWithFlags(void*, void*, unsigned);
int cudaEventSynchronize(void*);
int cudaEventQuery(void*);
int cublasSetMatrix(int, int, int, const void*, int, void*, int);
int cublasGetMatrix(int, int, int, const void*, int, void*, int);
int cublasSetMatrixAsync(int, int, int, const void*, int, void*, int, void*);
int cublasGetMatrixAsync(int, int, int, const void*, int, void*, int, void*);
int cublasSetVector(int, int, const void*, int, void*, int);
int cublasGetVector(int, int, const void*, int, void*, int);
int cublasSetVector_64(long long, long long, const void*, long long, void*, long long);
int cublasGetVectorAsync(int, int, const void*, int, void*, int, void*);
int cublasCreate_v2(void**);
int cublasDestroy_v2(void*);
int cublasSetStream_v2(void*, void*);
int cublasGetStream_v2(void*, void**);
int cublasSetMathMode(void*, int);
int cublasGetMathMode(void*, int*);
int cublasSetWorkspace_v2(void*, void*, std::size_t);
int cublasSetPointerMode_v2(void*, int);
int cublasGetVersion_v2(void*, int*);
int cublasGetProperty(int, int*);
const char* cublasGetStatusString(int);
const char* cublasGetStatusName(int);
int cublasGemmEx(void*, int, int, int, int, int, const void*, const void*, int, int, const void*, int, int, const void*,
                 void*, int, int, int, int);
int cublasGemmStridedBatchedEx(void*, int, int, int, int, int, const void*, const void*, int, int, long long,
                               const void*, int, int, long long, const void*, void*, int, int, long long, int, int, int);
int cublasGemmBatchedEx(void*, int, int, int, int, int, const void*, const void* const*, int, int, const void* const*,
                        int, int, const void*, void* const*, int, int, int, int, int);
int cublasSgemm_v2(void*, int, int, int, int, int, const float*, const float*, int, const float*, int, const float*,
                   float*, int);
int cublasHgemm(void*, int, int, int, int, int, const std::uint16_t*, const std::uint16_t*, int, const std::uint16_t*,
                int, const std::uint16_t*, std::uint16_t*, int);
int cublasSgemmBatched(void*, int, int, int, int, int, const float*, const float* const*, int, const float* const*, int,
                       const float*, float* const*, int, int);
int cublasSgemmStridedBatched(void*, int, int, int, int, int, const float*, const float*, int, long long, const float*,
                              int, long long, const float*, float*, int, long long, int);
int cublasStrsmBatched(void*, int, int, int, int, int, int, const float*, const float* const*, int, float* const*, int,
                       int);
// libcublasLt.so.13: descriptors are pointers to the library's own objects.
int cublasLtCreate(void**);
int cublasLtDestroy(void*);
std::size_t cublasLtGetVersion();
const char* cublasLtGetStatusName(int);
int cublasLtMatmulDescCreate(void**, int, int);
int cublasLtMatmulDescInit_internal(void*, std::size_t, int, int);
int cublasLtMatmulDescDestroy(void*);
int cublasLtMatmulDescSetAttribute(void*, int, const void*, std::size_t);
int cublasLtMatmulDescGetAttribute(const void*, int, void*, std::size_t, std::size_t*);
int cublasLtMatrixLayoutCreate(void**, int, std::uint64_t, std::uint64_t, std::int64_t);
int cublasLtMatrixLayoutDestroy(void*);
int cublasLtMatrixLayoutSetAttribute(void*, int, const void*, std::size_t);
int cublasLtMatmulPreferenceCreate(void**);
int cublasLtMatmulPreferenceDestroy(void*);
int cublasLtMatmulPreferenceSetAttribute(void*, int, const void*, std::size_t);
int cublasLtMatmulAlgoGetHeuristic(void*, void*, void*, void*, void*, void*, void*, int, void*, int*);
int cublasLtMatmul(void*, void*, const void*, const void*, void*, const void*, void*, const void*, const void*, void*,
                   void*, void*, const void*, void*, std::size_t, void*);
int cublasLtMatrixTransform(void*, void*, const void*, const void*, void*, const void*, const void*, void*, void*,
                            void*, void*);
}

namespace {

constexpr int kHostToDevice = 1, kDeviceToHost = 2;
constexpr int kOpN = 0, kOpT = 1;
constexpr int kR32F = 0, kR16F = 2, kR16BF = 14;
constexpr int kCompute16F = 64, kCompute32F = 68;
constexpr int kTensorOp = 99;  // CUBLAS_GEMM_DEFAULT_TENSOR_OP
constexpr int kInvalidValue = 7, kNotInitialized = 1;
constexpr int kCudaInvalidValue = 1, kCudaInvalidHandle = 400;  // cudaError_t


// Values stored as one of the GEMM element types.
struct Typed {
  int type;
  std::vector<std::uint8_t> bytes;
  std::size_t count() const { return bytes.size() / element(type); }
  static std::size_t element(int type) { return type == kR32F ? 4 : 2; }
  double at(std::size_t i) const {
    if (type == kR32F) {
      float f;
      std::memcpy(&f, bytes.data() + 4 * i, 4);
      return f;
    }
    std::uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    return type == kR16F ? sim::half_to_float(h) : sim::bfloat16_to_float(h);
  }
  void set(std::size_t i, double value) {
    if (type == kR32F) {
      const float f = static_cast<float>(value);
      std::memcpy(bytes.data() + 4 * i, &f, 4);
      return;
    }
    const std::uint16_t h = type == kR16F ? sim::float_to_half(static_cast<float>(value))
                                          : sim::float_to_bfloat16(static_cast<float>(value));
    std::memcpy(bytes.data() + 2 * i, &h, 2);
  }
};

Typed random_matrix(int type, std::size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<double> value(-1.0, 1.0);
  Typed t{type, std::vector<std::uint8_t>(count * Typed::element(type))};
  for (std::size_t i = 0; i < count; ++i) t.set(i, value(rng));
  return t;
}

// C = alpha op(A) op(B) + beta C, column-major, in double from the stored values.
std::vector<double> reference(int ta, int tb, int m, int n, int k, double alpha, const Typed& a, int lda, const Typed& b,
                              int ldb, double beta, const Typed& c, int ldc, std::size_t a0 = 0, std::size_t b0 = 0,
                              std::size_t c0 = 0) {
  std::vector<double> out(static_cast<std::size_t>(ldc) * n);
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      double sum = 0;
      for (int p = 0; p < k; ++p) {
        const double av = ta == kOpN ? a.at(a0 + i + static_cast<std::size_t>(p) * lda) : a.at(a0 + p + static_cast<std::size_t>(i) * lda);
        const double bv = tb == kOpN ? b.at(b0 + p + static_cast<std::size_t>(j) * ldb) : b.at(b0 + j + static_cast<std::size_t>(p) * ldb);
        sum += av * bv;
      }
      out[i + static_cast<std::size_t>(j) * ldc] = alpha * sum + beta * c.at(c0 + i + static_cast<std::size_t>(j) * ldc);
    }
  }
  return out;
}

double tolerance(int c_type, int compute, int k) {
  if (c_type == kR16F || compute == kCompute16F) return 2e-3 * k + 1e-2;
  if (c_type == kR16BF) return 1e-2 * k;
  return 1e-5 * k + 1e-5;
}

// Device memory holding `t`.
void* upload(const Typed& t) {
  void* p = nullptr;
  EXPECT(cudaMalloc(&p, t.bytes.size()) == 0, "cudaMalloc");
  EXPECT(cudaMemcpy(p, t.bytes.data(), t.bytes.size(), kHostToDevice) == 0, "upload");
  return p;
}

// Waits for the GEMMs first: a handle's stream may be a non-blocking one, which the copy's
// default stream does not wait for.
Typed download(const void* p, int type, std::size_t count) {
  Typed t{type, std::vector<std::uint8_t>(count * Typed::element(type))};
  EXPECT(cudaDeviceSynchronize() == 0, "synchronize");
  EXPECT(cudaMemcpy(t.bytes.data(), p, t.bytes.size(), kDeviceToHost) == 0, "download");
  return t;
}

void compare(const char* what, const Typed& got, const std::vector<double>& want, int m, int n, int ldc, double tol,
             std::size_t c0 = 0) {
  double worst = 0;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      const std::size_t at = i + static_cast<std::size_t>(j) * ldc;
      worst = std::max(worst, std::fabs(got.at(c0 + at) - want[at]));
    }
  }
  EXPECT(worst <= tol, "%s: largest error %g, tolerance %g", what, worst, tol);
}

// Scalars in the compute type's representation.
struct Scalars {
  std::uint8_t alpha[8] = {}, beta[8] = {};
  Scalars(int compute, double a, double b) {
    if (compute == kCompute16F) {
      const std::uint16_t ha = sim::float_to_half(static_cast<float>(a)), hb = sim::float_to_half(static_cast<float>(b));
      std::memcpy(alpha, &ha, 2);
      std::memcpy(beta, &hb, 2);
    } else {
      const float fa = static_cast<float>(a), fb = static_cast<float>(b);
      std::memcpy(alpha, &fa, 4);
      std::memcpy(beta, &fb, 4);
    }
  }
};

int in_broker_child(const BrokerProcess& broker, const std::function<void()>& body) {
  if (!testing::wait_until_listening(broker.socket_path())) return -1;
  return testing::wait_for_child(testing::run_in_child([&] {
    ::setenv("GPUBROKER_SOCKET", broker.socket_path().c_str(), 1);
    body();
    return testing::child_status();
  }));
}

// One cublasGemmEx of every transpose combination for the given types.
void gemm_ex_all_transposes(void* handle, int ab_type, int c_type, int compute, std::mt19937& rng) {
  const int m = 13, n = 7, k = 19, ld = 24;
  for (int ta : {kOpN, kOpT}) {
    for (int tb : {kOpN, kOpT}) {
      const Typed a = random_matrix(ab_type, static_cast<std::size_t>(ld) * ld, rng);
      const Typed b = random_matrix(ab_type, static_cast<std::size_t>(ld) * ld, rng);
      const Typed c = random_matrix(c_type, static_cast<std::size_t>(ld) * n, rng);
      void *da = upload(a), *db = upload(b), *dc = upload(c);
      const Scalars s(compute, 0.75, -0.5);
      EXPECT(cublasGemmEx(handle, ta, tb, m, n, k, s.alpha, da, ab_type, ld, db, ab_type, ld, s.beta, dc, c_type, ld,
                          compute, kTensorOp) == 0,
             "GemmEx types %d/%d compute %d ops %d,%d", ab_type, c_type, compute, ta, tb);
      const std::string what = "GemmEx types " + std::to_string(ab_type) + "/" + std::to_string(c_type) + " compute " +
                               std::to_string(compute) + " ops " + std::to_string(ta) + "," + std::to_string(tb);
      compare(what.c_str(), download(dc, c_type, c.count()), reference(ta, tb, m, n, k, 0.75, a, ld, b, ld, -0.5, c, ld), m,
              n, ld, tolerance(c_type, compute, k));
      cudaFree(da);
      cudaFree(db);
      cudaFree(dc);
    }
  }
}

}  // namespace

TEST_CASE("cublasGemmEx, cublasSgemm_v2 and cublasHgemm match a reference for every type and transpose runners use",
          "[cublas]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          std::mt19937 rng(7);
          void* handle = nullptr;
          void* stream = nullptr;
          EXPECT(cublasCreate_v2(&handle) == 0 && handle != nullptr, "cublasCreate_v2");
          // ggml's model-load sequence: a non-blocking stream, math mode, the stream, a workspace.
          EXPECT(cudaStreamCreateWithFlags(&stream, 1) == 0, "stream");
          EXPECT(cublasSetMathMode(handle, 1) == 0, "cublasSetMathMode");
          int mode = -1;
          EXPECT(cublasGetMathMode(handle, &mode) == 0 && mode == 1, "math mode %d", mode);
          EXPECT(cublasSetStream_v2(handle, stream) == 0, "cublasSetStream_v2");
          void* got_stream = nullptr;
          EXPECT(cublasGetStream_v2(handle, &got_stream) == 0 && got_stream == stream, "cublasGetStream_v2");
          void* workspace = nullptr;
          EXPECT(cudaMalloc(&workspace, 4 << 20) == 0 && cublasSetWorkspace_v2(handle, workspace, 4 << 20) == 0, "workspace");

          gemm_ex_all_transposes(handle, kR16BF, kR32F, kCompute32F, rng);  // BF16 in, compute 32F
          gemm_ex_all_transposes(handle, kR16F, kR16F, kCompute16F, rng);   // F16 in and out, compute 16F
          gemm_ex_all_transposes(handle, kR16F, kR32F, kCompute32F, rng);   // F16 in, F32 out
          gemm_ex_all_transposes(handle, kR32F, kR32F, kCompute32F, rng);

          const int m = 9, n = 11, k = 5, ld = 16;
          for (int ta : {kOpN, kOpT}) {
            for (int tb : {kOpN, kOpT}) {
              const Typed a = random_matrix(kR32F, ld * ld, rng), b = random_matrix(kR32F, ld * ld, rng),
                          c = random_matrix(kR32F, ld * n, rng);
              void *da = upload(a), *db = upload(b), *dc = upload(c);
              const float alpha = 1.5f, beta = 0.25f;
              EXPECT(cublasSgemm_v2(handle, ta, tb, m, n, k, &alpha, static_cast<float*>(da), ld, static_cast<float*>(db), ld,
                                    &beta, static_cast<float*>(dc), ld) == 0,
                     "Sgemm ops %d,%d", ta, tb);
              compare("Sgemm", download(dc, kR32F, c.count()), reference(ta, tb, m, n, k, 1.5, a, ld, b, ld, 0.25, c, ld), m,
                      n, ld, tolerance(kR32F, kCompute32F, k));
              const Typed ha = random_matrix(kR16F, ld * ld, rng), hb = random_matrix(kR16F, ld * ld, rng),
                          hc = random_matrix(kR16F, ld * n, rng);
              void *dha = upload(ha), *dhb = upload(hb), *dhc = upload(hc);
              const std::uint16_t half_alpha = sim::float_to_half(1.0f), half_beta = sim::float_to_half(0.0f);
              EXPECT(cublasHgemm(handle, ta, tb, m, n, k, &half_alpha, static_cast<std::uint16_t*>(dha), ld,
                                 static_cast<std::uint16_t*>(dhb), ld, &half_beta, static_cast<std::uint16_t*>(dhc), ld) == 0,
                     "Hgemm ops %d,%d", ta, tb);
              compare("Hgemm", download(dhc, kR16F, hc.count()), reference(ta, tb, m, n, k, 1.0, ha, ld, hb, ld, 0.0, hc, ld),
                      m, n, ld, tolerance(kR16F, kCompute16F, k));
              for (void* p : {da, db, dc, dha, dhb, dhc}) cudaFree(p);
            }
          }
          EXPECT(cublasDestroy_v2(handle) == 0, "cublasDestroy_v2");
          EXPECT(cublasDestroy_v2(handle) == kNotInitialized, "a destroyed handle is refused");
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("batched GEMMs match a reference; the pointer arrays are read from device memory", "[cublas]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          std::mt19937 rng(11);
          void* handle = nullptr;
          EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate_v2");
          const int m = 8, n = 6, k = 10, ld = 12, batch = 3;
          const long long stride = static_cast<long long>(ld) * ld;
          for (int type : {kR16F, kR32F}) {
            const int compute = type == kR16F ? kCompute16F : kCompute32F;
            for (int ta : {kOpN, kOpT}) {
              const int tb = kOpN;
              const Typed a = random_matrix(type, stride * batch, rng), b = random_matrix(type, stride * batch, rng),
                          c = random_matrix(type, stride * batch, rng);
              const Scalars s(compute, 1.0, 0.5);
              // Strided.
              void *da = upload(a), *db = upload(b), *dc = upload(c);
              EXPECT(cublasGemmStridedBatchedEx(handle, ta, tb, m, n, k, s.alpha, da, type, ld, stride, db, type, ld, stride,
                                                s.beta, dc, type, ld, stride, batch, compute, kTensorOp) == 0,
                     "GemmStridedBatchedEx type %d", type);
              Typed got = download(dc, type, c.count());
              for (int i = 0; i < batch; ++i) {
                compare("GemmStridedBatchedEx", got,
                        reference(ta, tb, m, n, k, 1.0, a, ld, b, ld, 0.5, c, ld, i * stride, i * stride, i * stride), m, n, ld,
                        tolerance(type, compute, k), i * stride);
              }
              // Pointer arrays in device memory, the matrices in reverse order.
              EXPECT(cudaMemcpy(dc, c.bytes.data(), c.bytes.size(), kHostToDevice) == 0, "reset C");
              const std::size_t element = Typed::element(type);
              std::vector<std::uint64_t> pa(batch), pb(batch), pc(batch);
              for (int i = 0; i < batch; ++i) {
                pa[i] = reinterpret_cast<std::uint64_t>(da) + (batch - 1 - i) * stride * element;
                pb[i] = reinterpret_cast<std::uint64_t>(db) + (batch - 1 - i) * stride * element;
                pc[i] = reinterpret_cast<std::uint64_t>(dc) + i * stride * element;
              }
              void *dpa = nullptr, *dpb = nullptr, *dpc = nullptr;
              for (auto [device, host] : {std::pair{&dpa, &pa}, std::pair{&dpb, &pb}, std::pair{&dpc, &pc}}) {
                EXPECT(cudaMalloc(device, batch * 8) == 0 && cudaMemcpy(*device, host->data(), batch * 8, kHostToDevice) == 0,
                       "pointer array");
              }
              if (type == kR32F) {
                const float alpha = 1.0f, beta = 0.5f;
                EXPECT(cublasSgemmBatched(handle, ta, tb, m, n, k, &alpha, static_cast<const float* const*>(dpa), ld,
                                          static_cast<const float* const*>(dpb), ld, &beta, static_cast<float* const*>(dpc), ld,
                                          batch) == 0,
                       "SgemmBatched");
              } else {
                EXPECT(cublasGemmBatchedEx(handle, ta, tb, m, n, k, s.alpha, static_cast<const void* const*>(dpa), type, ld,
                                           static_cast<const void* const*>(dpb), type, ld, s.beta,
                                           static_cast<void* const*>(dpc), type, ld, batch, compute, kTensorOp) == 0,
                       "GemmBatchedEx");
              }
              got = download(dc, type, c.count());
              for (int i = 0; i < batch; ++i) {
                const std::size_t from = (batch - 1 - i) * stride;
                compare("pointer-array GEMM", got, reference(ta, tb, m, n, k, 1.0, a, ld, b, ld, 0.5, c, ld, from, from, i * stride),
                        m, n, ld, tolerance(type, compute, k), i * stride);
              }
              if (type == kR32F) {
                EXPECT(cudaMemcpy(dc, c.bytes.data(), c.bytes.size(), kHostToDevice) == 0, "reset C");
                const float alpha = 1.0f, beta = 0.5f;
                EXPECT(cublasSgemmStridedBatched(handle, ta, tb, m, n, k, &alpha, static_cast<float*>(da), ld, stride,
                                                 static_cast<float*>(db), ld, stride, &beta, static_cast<float*>(dc), ld, stride,
                                                 batch) == 0,
                       "SgemmStridedBatched");
                got = download(dc, type, c.count());
                for (int i = 0; i < batch; ++i) {
                  compare("SgemmStridedBatched", got,
                          reference(ta, tb, m, n, k, 1.0, a, ld, b, ld, 0.5, c, ld, i * stride, i * stride, i * stride), m, n,
                          ld, tolerance(type, compute, k), i * stride);
                }
              }
              for (void* p : {da, db, dc, dpa, dpb, dpc}) cudaFree(p);
            }
          }
          cublasDestroy_v2(handle);
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("cublasStrsmBatched solves each triangular system of its device pointer arrays", "[cublas]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          std::mt19937 rng(3);
          void* handle = nullptr;
          EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate_v2");
          const int m = 6, n = 4, batch = 2;
          // Lower triangular A (well conditioned), side left, no transpose: A X = alpha B.
          std::vector<float> a(m * m * batch, 0.0f), x(m * n * batch), b(m * n * batch);
          std::uniform_real_distribution<float> value(-1.0f, 1.0f);
          for (int s = 0; s < batch; ++s) {
            for (int j = 0; j < m; ++j) {
              for (int i = j; i < m; ++i) a[s * m * m + i + j * m] = i == j ? 2.0f + value(rng) * 0.5f : value(rng) * 0.5f;
            }
            for (int i = 0; i < m * n; ++i) x[s * m * n + i] = value(rng);
            for (int j = 0; j < n; ++j) {  // B = A X / alpha, alpha = 2
              for (int i = 0; i < m; ++i) {
                double sum = 0;
                for (int p = 0; p <= i; ++p) sum += static_cast<double>(a[s * m * m + i + p * m]) * x[s * m * n + p + j * m];
                b[s * m * n + i + j * m] = static_cast<float>(sum / 2.0);
              }
            }
          }
          void *da = nullptr, *db = nullptr, *dpa = nullptr, *dpb = nullptr;
          EXPECT(cudaMalloc(&da, a.size() * 4) == 0 && cudaMemcpy(da, a.data(), a.size() * 4, kHostToDevice) == 0, "A");
          EXPECT(cudaMalloc(&db, b.size() * 4) == 0 && cudaMemcpy(db, b.data(), b.size() * 4, kHostToDevice) == 0, "B");
          std::uint64_t pa[batch], pb[batch];
          for (int s = 0; s < batch; ++s) {
            pa[s] = reinterpret_cast<std::uint64_t>(da) + s * m * m * 4;
            pb[s] = reinterpret_cast<std::uint64_t>(db) + s * m * n * 4;
          }
          EXPECT(cudaMalloc(&dpa, sizeof pa) == 0 && cudaMemcpy(dpa, pa, sizeof pa, kHostToDevice) == 0, "A array");
          EXPECT(cudaMalloc(&dpb, sizeof pb) == 0 && cudaMemcpy(dpb, pb, sizeof pb, kHostToDevice) == 0, "B array");
          const float alpha = 2.0f;
          EXPECT(cublasStrsmBatched(handle, 0, 0, kOpN, 0, m, n, &alpha, static_cast<const float* const*>(dpa), m,
                                    static_cast<float* const*>(dpb), m, batch) == 0,
                 "StrsmBatched");
          std::vector<float> solved(b.size());
          EXPECT(cudaMemcpy(solved.data(), db, solved.size() * 4, kDeviceToHost) == 0, "download");
          double worst = 0;
          for (std::size_t i = 0; i < solved.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(solved[i]) - x[i]));
          EXPECT(worst < 1e-4, "largest error %g", worst);
          // An array entry that is not the session's memory is refused before cuBLAS sees it.
          pb[1] = 0x1000;
          EXPECT(cudaMemcpy(dpb, pb, sizeof pb, kHostToDevice) == 0, "B array");
          EXPECT(cublasStrsmBatched(handle, 0, 0, kOpN, 0, m, n, &alpha, static_cast<const float* const*>(dpa), m,
                                    static_cast<float* const*>(dpb), m, batch) == kInvalidValue,
                 "a foreign pointer in the array");
          cublasDestroy_v2(handle);
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("the broker refuses GEMMs that touch memory that is not the session's", "[cublas][security]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          void* handle = nullptr;
          EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate_v2");
          void* d = nullptr;
          EXPECT(cudaMalloc(&d, 64 * 64 * 4) == 0, "cudaMalloc");
          const float alpha = 1.0f, beta = 0.0f;
          float* f = static_cast<float*>(d);
          // B runs past the end of the allocation.
          EXPECT(cublasSgemm_v2(handle, kOpN, kOpN, 64, 64, 64, &alpha, f, 64, f + 1, 64, &beta, f, 64) == kInvalidValue,
                 "B past the end");
          // A host address in a device pointer array.
          std::uint64_t arrays[3] = {reinterpret_cast<std::uint64_t>(d), reinterpret_cast<std::uint64_t>(&alpha),
                                     reinterpret_cast<std::uint64_t>(d)};
          void* da = nullptr;
          EXPECT(cudaMalloc(&da, sizeof arrays) == 0 && cudaMemcpy(da, arrays, sizeof arrays, kHostToDevice) == 0, "arrays");
          auto* p = static_cast<std::uint64_t*>(da);
          EXPECT(cublasGemmBatchedEx(handle, kOpN, kOpN, 4, 4, 4, &alpha, reinterpret_cast<const void* const*>(p), kR32F, 4,
                                     reinterpret_cast<const void* const*>(p + 1), kR32F, 4, &beta,
                                     reinterpret_cast<void* const*>(p + 2), kR32F, 4, 1, kCompute32F, kTensorOp) == kInvalidValue,
                 "a host pointer in the B array");
          // Pointer arrays that are host memory, as a program that forgot to upload them would pass.
          void* host_array[1] = {d};
          EXPECT(cublasGemmBatchedEx(handle, kOpN, kOpN, 4, 4, 4, &alpha, host_array, kR32F, 4, host_array, kR32F, 4, &beta,
                                     host_array, kR32F, 4, 1, kCompute32F, kTensorOp) == kInvalidValue,
                 "host pointer arrays");
          EXPECT(cublasSgemm_v2(reinterpret_cast<void*>(0x12345), kOpN, kOpN, 1, 1, 1, &alpha, f, 1, f, 1, &beta, f, 1) ==
                     kNotInitialized,
                 "an unknown handle");
          cublasDestroy_v2(handle);
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("cublasSetMatrix, GetMatrix and the Vector forms move strided data both ways, at once and on a stream",
          "[cublas][transfer]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          // A 5 x 7 float matrix with host leading dimension 6 into device memory with ld 9.
          const int rows = 5, cols = 7, lda = 6, ldb = 9;
          std::vector<float> host(lda * cols);
          for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) + 0.5f;
          void* d = nullptr;
          EXPECT(cudaMalloc(&d, ldb * cols * sizeof(float)) == 0, "cudaMalloc");
          std::vector<float> sentinel(ldb * cols, -1.0f);
          EXPECT(cudaMemcpy(d, sentinel.data(), sentinel.size() * sizeof(float), kHostToDevice) == 0, "fill");
          EXPECT(cublasSetMatrix(rows, cols, sizeof(float), host.data(), lda, d, ldb) == 0, "cublasSetMatrix");
          std::vector<float> device(ldb * cols);
          EXPECT(cudaMemcpy(device.data(), d, device.size() * sizeof(float), kDeviceToHost) == 0, "read back");
          int wrong = 0;
          for (int j = 0; j < cols; ++j) {
            for (int i = 0; i < ldb; ++i) {
              const float expected = i < rows ? host[j * lda + i] : -1.0f;  // the padding rows stay untouched
              wrong += device[j * ldb + i] != expected;
            }
          }
          EXPECT(wrong == 0, "%d elements differ after cublasSetMatrix", wrong);
          std::vector<float> back(lda * cols, 0.0f);
          EXPECT(cublasGetMatrix(rows, cols, sizeof(float), d, ldb, back.data(), lda) == 0, "cublasGetMatrix");
          wrong = 0;
          for (int j = 0; j < cols; ++j) {
            for (int i = 0; i < lda; ++i) wrong += back[j * lda + i] != (i < rows ? host[j * lda + i] : 0.0f);
          }
          EXPECT(wrong == 0, "%d elements differ after cublasGetMatrix", wrong);

          // The Async forms, on a stream, with a contiguous host side.
          void* stream = nullptr;
          EXPECT(cudaStreamCreateWithFlags(&stream, 1) == 0, "stream");
          std::vector<float> packed(rows * cols);
          for (std::size_t i = 0; i < packed.size(); ++i) packed[i] = 100.0f + static_cast<float>(i);
          EXPECT(cublasSetMatrixAsync(rows, cols, sizeof(float), packed.data(), rows, d, ldb, stream) == 0, "SetMatrixAsync");
          std::vector<float> again(rows * cols, 0.0f);
          EXPECT(cublasGetMatrixAsync(rows, cols, sizeof(float), d, ldb, again.data(), rows, stream) == 0, "GetMatrixAsync");
          EXPECT(cudaStreamSynchronize(stream) == 0 && again == packed, "the Async round trip");

          // Vectors with increments: every third element on the host, every second on the device.
          const int n = 10;
          std::vector<double> x(3 * n);
          for (int i = 0; i < 3 * n; ++i) x[i] = i * 0.25;
          void* y = nullptr;
          EXPECT(cudaMalloc(&y, 2 * n * sizeof(double)) == 0, "cudaMalloc y");
          EXPECT(cublasSetVector(n, sizeof(double), x.data(), 3, y, 2) == 0, "cublasSetVector");
          std::vector<double> dy(2 * n);
          EXPECT(cudaMemcpy(dy.data(), y, dy.size() * sizeof(double), kDeviceToHost) == 0, "read y");
          wrong = 0;
          for (int i = 0; i < n; ++i) wrong += dy[2 * i] != x[3 * i];
          EXPECT(wrong == 0, "%d elements differ after cublasSetVector", wrong);
          std::vector<double> z(n, 0.0);
          EXPECT(cublasGetVectorAsync(n, sizeof(double), y, 2, z.data(), 1, stream) == 0, "cublasGetVectorAsync");
          wrong = 0;
          for (int i = 0; i < n; ++i) wrong += z[i] != x[3 * i];
          EXPECT(wrong == 0, "%d elements differ after cublasGetVectorAsync", wrong);
          EXPECT(cublasSetVector_64(n, sizeof(double), x.data(), 3, y, 2) == 0, "cublasSetVector_64");

          // cuBLAS's own argument checks.
          EXPECT(cublasSetMatrix(rows, cols, 0, host.data(), lda, d, ldb) == kInvalidValue, "element size 0");
          EXPECT(cublasSetVector(n, sizeof(double), x.data(), 0, y, 2) == kInvalidValue, "increment 0");
          EXPECT(cublasGetMatrix(-1, cols, sizeof(float), d, ldb, back.data(), lda) == kInvalidValue, "negative rows");
          EXPECT(cublasSetMatrix(0, cols, sizeof(float), host.data(), lda, d, ldb) == 0, "an empty matrix moves nothing");
          cudaStreamDestroy(stream);
          cudaFree(d);
          cudaFree(y);
        }) == 0);
  CHECK(broker.stop() == 0);
}

TEST_CASE("cublasSetMatrix and GetMatrix cannot reach memory that is not the session's", "[cublas][transfer][security]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          void* d = nullptr;
          EXPECT(cudaMalloc(&d, 64 * sizeof(float)) == 0, "cudaMalloc");
          std::vector<float> host(64 * 64, 1.0f);
          // 8 columns of 8 with leading dimension 8 fit; leading dimension 9 runs 7 floats past the end.
          EXPECT(cublasSetMatrix(8, 8, sizeof(float), host.data(), 8, d, 8) == 0, "the allocation itself");
          EXPECT(cublasSetMatrix(8, 8, sizeof(float), host.data(), 8, d, 9) == kInvalidValue, "past the end");
          EXPECT(cublasGetMatrix(8, 8, sizeof(float), d, 9, host.data(), 8) == kInvalidValue, "reading past the end");
          EXPECT(cublasSetVector(8, sizeof(float), host.data(), 1, host.data(), 1) == kInvalidValue, "a host address");
          // Huge extents whose arithmetic would wrap are refused, not wrapped.
          EXPECT(cublasSetMatrix(1, 2, sizeof(float), host.data(), 1, d, 0x7fffffff) == kInvalidValue, "a huge ld");
          // After the refusals the session still works, and the pipe is in step.
          std::vector<float> back(64, 0.0f);
          EXPECT(cublasGetVector(64, sizeof(float), d, 1, back.data(), 1) == 0 && back[63] == 1.0f, "still served");
          cudaFree(d);
        }) == 0);
  CHECK(broker.stop() == 0);
}

TEST_CASE("cudaStreamGetFlags and GetPriority answer for the stream, and cudaEventRecordWithFlags records",
          "[runtime][stream]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          void *blocking = nullptr, *urgent = nullptr;
          EXPECT(cudaStreamCreateWithFlags(&blocking, 0) == 0, "a blocking stream");
          EXPECT(cudaStreamCreateWithPriority(&urgent, 1, -3) == 0, "a non-blocking stream of priority -3");
          unsigned flags = 99;
          EXPECT(cudaStreamGetFlags(blocking, &flags) == 0 && flags == 0, "blocking stream flags %u", flags);
          EXPECT(cudaStreamGetFlags(urgent, &flags) == 0 && flags == 1, "non-blocking stream flags %u", flags);
          EXPECT(cudaStreamGetFlags(nullptr, &flags) == 0 && flags == 0, "the default stream's flags %u", flags);
          EXPECT(cudaStreamGetFlags_ptsz(urgent, &flags) == 0 && flags == 1, "the _ptsz entry point: flags %u", flags);
          int priority = 99;
          EXPECT(cudaStreamGetPriority(urgent, &priority) == 0 && priority == -3, "priority %d", priority);
          EXPECT(cudaStreamGetPriority(blocking, &priority) == 0 && priority == 0, "default priority %d", priority);
          EXPECT(cudaStreamCreateWithPriority(&urgent, 1, -100) == 0 && cudaStreamGetPriority(urgent, &priority) == 0 &&
                     priority == -5,
                 "a priority past the device's range is clamped to it: %d", priority);
          EXPECT(cudaStreamGetFlags(reinterpret_cast<void*>(0x7777), &flags) == kCudaInvalidHandle, "an unknown stream");
          EXPECT(cudaStreamGetFlags(urgent, nullptr) == kCudaInvalidValue, "a null result");
          void* event = nullptr;
          EXPECT(cudaEventCreate(&event) == 0, "cudaEventCreate");
          EXPECT(cudaEventRecordWithFlags(event, urgent, 0) == 0 && cudaEventSynchronize(event) == 0, "record, default");
          EXPECT(cudaEventRecordWithFlags(event, urgent, 1) == 0 && cudaEventSynchronize(event) == 0, "record, external");
          // An unknown flag fails asynchronously, at the next synchronizing call.
          EXPECT(cudaEventRecordWithFlags(event, urgent, 4) == 0, "posted");
          EXPECT(cudaEventQuery(event) == kCudaInvalidValue, "the bad flag surfaces");
        }) == 0);
  CHECK(broker.stop() == 0);
}

TEST_CASE("cudaStreamGetAttribute reads a stream's priority and synchronization policy; what would take from the "
          "shared L2 cache is refused; the cache configuration preference is kept per device",
          "[runtime][stream]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          constexpr int kAccessPolicyWindow = 1, kSynchronizationPolicy = 3, kPriority = 8, kMemSyncDomain = 10;
          constexpr int kSyncAuto = 1, kSyncSpin = 2, kNotSupported = 801;
          union Value {
            char pad[64];
            int word;
            struct {
              void* base;
              std::size_t bytes;
              float hit_ratio;
              int hit, miss;
            } window;
          };
          void* urgent = nullptr;
          EXPECT(cudaStreamCreateWithPriority(&urgent, 1, -2) == 0, "a stream of priority -2");
          Value value{};
          EXPECT(cudaStreamGetAttribute(urgent, kPriority, &value) == 0 && value.word == -2, "priority %d", value.word);
          value.word = 0;
          EXPECT(cudaStreamGetAttribute(urgent, kSynchronizationPolicy, &value) == 0 && value.word == kSyncAuto,
                 "synchronization policy %d", value.word);
          std::memset(&value, 0x5a, sizeof value);
          EXPECT(cudaStreamGetAttribute(nullptr, kAccessPolicyWindow, &value) == 0 && value.window.base == nullptr &&
                     value.window.bytes == 0,
                 "the default stream's access policy window is empty");
          EXPECT(cudaStreamGetAttribute(reinterpret_cast<void*>(0x7777), kPriority, &value) == kCudaInvalidHandle,
                 "an unknown stream");
          EXPECT(cudaStreamGetAttribute(urgent, kPriority, nullptr) == kCudaInvalidValue, "a null value");
          value = Value{};
          value.word = kSyncAuto;
          EXPECT(cudaStreamSetAttribute(urgent, kSynchronizationPolicy, &value) == 0, "the policy the shim waits by");
          value.word = kSyncSpin;
          EXPECT(cudaStreamSetAttribute(urgent, kSynchronizationPolicy, &value) == kNotSupported, "another policy");
          EXPECT(cudaGetLastError() == kNotSupported, "the refusal is the last error");
          void* buffer = nullptr;
          EXPECT(cudaMalloc(&buffer, 1 << 20) == 0, "cudaMalloc");
          value = Value{};
          value.window = {buffer, 1 << 20, 1.0f, 2, 0};
          EXPECT(cudaStreamSetAttribute(urgent, kAccessPolicyWindow, &value) == kNotSupported,
                 "an access policy window (persisting L2 lines) is refused");
          EXPECT(cudaStreamGetAttribute(urgent, kMemSyncDomain, &value) == kNotSupported, "an attribute not served");
          (void)cudaGetLastError();
          int config = -1;
          EXPECT(cudaDeviceGetCacheConfig(&config) == 0 && config == 0, "the default preference %d", config);
          EXPECT(cudaDeviceSetCacheConfig(2) == 0 && cudaDeviceGetCacheConfig(&config) == 0 && config == 2,
                 "prefer L1, read back: %d", config);
          EXPECT(cudaDeviceSetCacheConfig(7) == kCudaInvalidValue, "a configuration that does not exist");
          EXPECT(cudaFree(buffer) == 0, "cudaFree");
        }) == 0);
  CHECK(broker.stop() == 0);
}

TEST_CASE("2D copies, 2D sets and pitched allocations whose sizes overflow are refused, not wrapped", "[runtime][copy]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          constexpr int kDeviceToDevice = 3, kMemoryAllocation = 2;
          void* a = nullptr;
          void* b = nullptr;
          std::size_t pitch = 0;
          EXPECT(cudaMallocPitch(&a, &pitch, 100, 8) == 0 && pitch >= 100, "a pitched allocation, pitch %zu", pitch);
          EXPECT(cudaMalloc(&b, 1 << 16) == 0, "cudaMalloc");
          EXPECT(cudaMemcpy2D(a, pitch, b, 128, 100, 8, kDeviceToDevice) == 0, "a 2D copy inside both");
          EXPECT(cudaMemset2D(a, pitch, 1, 100, 8) == 0, "a 2D set inside the allocation");
          EXPECT(cudaMemcpy2D(a, 1ull << 62, b, 64, 64, 8, kDeviceToDevice) == kCudaInvalidValue,
                 "a destination pitch whose rows overflow the address space");
          EXPECT(cudaMemcpy2D(a, pitch, b, SIZE_MAX / 2, 64, 3, kDeviceToDevice) == kCudaInvalidValue,
                 "a source pitch whose rows overflow the address space");
          EXPECT(cudaMemset2D(a, 1ull << 62, 0, 64, 8) == kCudaInvalidValue, "a 2D set whose rows overflow");
          EXPECT(cudaMemcpy2D(a, 1ull << 40, b, 64, 64, 8, kDeviceToDevice) != 0,
                 "rows that stay in the address space but leave the allocation are refused by the broker");
          void* huge = nullptr;
          EXPECT(cudaMallocPitch(&huge, &pitch, 512, (SIZE_MAX >> 9) + 2) == kMemoryAllocation && huge == nullptr,
                 "a pitch times height that overflows is no small allocation");
          (void)cudaGetLastError();
          EXPECT(cudaFree(a) == 0 && cudaFree(b) == 0, "cudaFree");
        }) == 0);
  CHECK(broker.stop() == 0);
}

TEST_CASE("device pointer mode reads alpha and beta from device memory", "[cublas]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          std::mt19937 rng(5);
          void* handle = nullptr;
          EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate_v2");
          EXPECT(cublasSetPointerMode_v2(handle, 1) == 0, "device pointer mode");
          const int m = 5, n = 5, k = 5;
          const Typed a = random_matrix(kR32F, 25, rng), b = random_matrix(kR32F, 25, rng), c = random_matrix(kR32F, 25, rng);
          void *da = upload(a), *db = upload(b), *dc = upload(c), *scalars = nullptr;
          const float values[2] = {-2.0f, 3.0f};
          EXPECT(cudaMalloc(&scalars, 8) == 0 && cudaMemcpy(scalars, values, 8, kHostToDevice) == 0, "scalars");
          const float* ds = static_cast<const float*>(scalars);
          EXPECT(cublasSgemm_v2(handle, kOpT, kOpN, m, n, k, ds, static_cast<float*>(da), 5, static_cast<float*>(db), 5, ds + 1,
                                static_cast<float*>(dc), 5) == 0,
                 "Sgemm");
          compare("device pointer mode", download(dc, kR32F, 25), reference(kOpT, kOpN, m, n, k, -2.0, a, 5, b, 5, 3.0, c, 5), m,
                  n, 5, 1e-4);
          cublasDestroy_v2(handle);
        }) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

TEST_CASE("status strings and versions are answered in the process", "[cublas]") {
  CHECK(std::string(cublasGetStatusName(0)) == "CUBLAS_STATUS_SUCCESS");
  CHECK(std::string(cublasGetStatusName(15)) == "CUBLAS_STATUS_NOT_SUPPORTED");
  CHECK(std::string(cublasGetStatusString(7)) == "an invalid numeric value was used as an argument");
  CHECK(std::string(cublasGetStatusString(12345)) == "unknown error");
  int major = 0, version = 0;
  CHECK(cublasGetProperty(0, &major) == 0);
  CHECK(major == 13);
  CHECK(cublasGetVersion_v2(nullptr, &version) == 0);
  CHECK(version / 10000 == 13);
}

// ---- cuBLASLt ------------------------------------------------------------------------------------

namespace {

// cublasLt.h's attribute numbers, as a program passes them.
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescPointerMode = 2;
constexpr int kLayoutBatchCount = 5, kLayoutStride = 6, kLayoutOrder = 1;
constexpr int kPrefMaxWorkspace = 1;
constexpr unsigned kEpilogueRelu = 2, kEpilogueBias = 4, kEpilogueReluBias = 6, kEpilogueGelu = 32,
                   kEpilogueGeluBias = 36, kEpilogueReluAux = 130;
constexpr int kDescBiasPointer = 8, kDescBiasType = 26;
constexpr int kNotSupported = 15;

struct HeuristicResult {  // cublasLtMatmulHeuristicResult_t
  std::uint64_t algo[8];
  std::size_t workspace_bytes;
  int state;
  float waves;
  int reserved[4];
};

void* layout(int type, std::uint64_t rows, std::uint64_t cols, std::int64_t ld, int batch = 1, std::int64_t stride = 0) {
  void* l = nullptr;
  EXPECT(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld) == 0, "cublasLtMatrixLayoutCreate");
  if (batch != 1) {
    EXPECT(cublasLtMatrixLayoutSetAttribute(l, kLayoutBatchCount, &batch, sizeof batch) == 0, "batch count");
    EXPECT(cublasLtMatrixLayoutSetAttribute(l, kLayoutStride, &stride, sizeof stride) == 0, "batch stride");
  }
  return l;
}

// One D = alpha op(A) op(B) + beta C through heuristic and matmul, D a different matrix from C, in
// `batch` strided batches; checked against the reference.
void lt_matmul(void* handle, void* stream, int ab_type, int cd_type, int ta, int tb, int batch, std::mt19937& rng) {
  const int m = 12, n = 10, k = 17, ld = 20;
  const std::int64_t stride = static_cast<std::int64_t>(ld) * ld;
  const Typed a = random_matrix(ab_type, stride * batch, rng), b = random_matrix(ab_type, stride * batch, rng),
              c = random_matrix(cd_type, stride * batch, rng);
  const Typed d0 = random_matrix(cd_type, stride * batch, rng);
  void *da = upload(a), *db = upload(b), *dc = upload(c), *dd = upload(d0);
  void* desc = nullptr;
  EXPECT(cublasLtMatmulDescCreate(&desc, kCompute32F, kR32F) == 0, "cublasLtMatmulDescCreate");
  EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescTransA, &ta, sizeof ta) == 0, "TRANSA");
  EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescTransB, &tb, sizeof tb) == 0, "TRANSB");
  void* la = ta == kOpN ? layout(ab_type, m, k, ld, batch, stride) : layout(ab_type, k, m, ld, batch, stride);
  void* lb = tb == kOpN ? layout(ab_type, k, n, ld, batch, stride) : layout(ab_type, n, k, ld, batch, stride);
  void* lc = layout(cd_type, m, n, ld, batch, stride);
  void* preference = nullptr;
  EXPECT(cublasLtMatmulPreferenceCreate(&preference) == 0, "cublasLtMatmulPreferenceCreate");
  const std::uint64_t workspace = 1 << 20;
  EXPECT(cublasLtMatmulPreferenceSetAttribute(preference, kPrefMaxWorkspace, &workspace, sizeof workspace) == 0,
         "MAX_WORKSPACE_BYTES");
  HeuristicResult result{};
  int returned = 0;
  EXPECT(cublasLtMatmulAlgoGetHeuristic(handle, desc, la, lb, lc, lc, preference, 1, &result, &returned) == 0 &&
             returned == 1 && result.state == 0,
         "heuristic: %d results", returned);
  const float alpha = 0.75f, beta = -0.5f;
  EXPECT(cublasLtMatmul(handle, desc, &alpha, da, la, db, lb, &beta, dc, lc, dd, lc, result.algo, nullptr, 0, stream) == 0,
         "cublasLtMatmul types %d/%d ops %d,%d batch %d", ab_type, cd_type, ta, tb, batch);
  EXPECT(cudaStreamSynchronize(stream) == 0, "stream");
  const Typed got = download(dd, cd_type, d0.count()), c_after = download(dc, cd_type, c.count());
  for (int i = 0; i < batch; ++i) {
    const std::size_t at = static_cast<std::size_t>(i) * stride;
    Typed c_batch{cd_type, std::vector<std::uint8_t>(c.bytes.begin() + at * Typed::element(cd_type), c.bytes.end())};
    const std::string what = "cublasLtMatmul types " + std::to_string(ab_type) + "/" + std::to_string(cd_type) + " ops " +
                             std::to_string(ta) + "," + std::to_string(tb) + " batch " + std::to_string(i);
    compare(what.c_str(), got, reference(ta, tb, m, n, k, 0.75, a, ld, b, ld, -0.5, c_batch, ld, at, at, 0), m, n, ld,
            tolerance(cd_type, kCompute32F, k), at);
  }
  EXPECT(c_after.bytes == c.bytes, "C is left as it was when D is another matrix");
  for (void* l : {la, lb, lc}) EXPECT(cublasLtMatrixLayoutDestroy(l) == 0, "layout destroy");
  EXPECT(cublasLtMatmulDescDestroy(desc) == 0 && cublasLtMatmulPreferenceDestroy(preference) == 0, "destroy");
  for (void* p : {da, db, dc, dd}) cudaFree(p);
}

}  // namespace

TEST_CASE("cublasLtMatmul matches a reference for FP32, FP16 and BF16 inputs, transposes and strided batches",
          "[cublaslt]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          std::mt19937 rng(11);
          void* handle = nullptr;
          void* stream = nullptr;
          EXPECT(cublasLtCreate(&handle) == 0 && handle != nullptr, "cublasLtCreate");
          EXPECT(cudaStreamCreateWithFlags(&stream, 1) == 0, "stream");
          for (int ta : {kOpN, kOpT}) {
            for (int tb : {kOpN, kOpT}) {
              lt_matmul(handle, stream, kR32F, kR32F, ta, tb, 1, rng);
              lt_matmul(handle, stream, kR16F, kR16F, ta, tb, 1, rng);
              lt_matmul(handle, stream, kR16BF, kR16BF, ta, tb, 1, rng);
            }
          }
          lt_matmul(handle, stream, kR16F, kR32F, kOpT, kOpN, 3, rng);
          lt_matmul(handle, nullptr, kR16BF, kR16BF, kOpN, kOpT, 2, rng);  // the default stream
          EXPECT(cublasLtDestroy(handle) == 0, "cublasLtDestroy");
        }) == 0);
}

// The epilogues cuBLASLt applies after alpha op(A) op(B) + beta C: the bias (per row), then ReLU or
// GELU (the tanh approximation cuBLASLt uses).
double epilogue(unsigned kind, double x, double bias) {
  if (kind & kEpilogueBias) x += bias;
  if ((kind & ~kEpilogueBias) == kEpilogueRelu) return x > 0 ? x : 0;
  if ((kind & ~kEpilogueBias) == kEpilogueGelu) return 0.5 * x * (1 + std::tanh(0.7978845608 * (x + 0.044715 * x * x * x)));
  return x;
}

TEST_CASE("cublasLtMatmul's bias, ReLU and GELU epilogues match a reference", "[cublaslt]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          std::mt19937 rng(13);
          void* handle = nullptr;
          EXPECT(cublasLtCreate(&handle) == 0, "cublasLtCreate");
          const int m = 16, n = 9, k = 21;
          for (unsigned kind : {kEpilogueRelu, kEpilogueBias, kEpilogueReluBias, kEpilogueGelu, kEpilogueGeluBias}) {
            for (int type : {kR32F, kR16F}) {
              const Typed a = random_matrix(type, m * k, rng), b = random_matrix(type, k * n, rng),
                          c = random_matrix(type, m * n, rng), bias = random_matrix(type, m, rng);
              void *da = upload(a), *db = upload(b), *dc = upload(c), *dbias = upload(bias);
              void* desc = nullptr;
              EXPECT(cublasLtMatmulDescCreate(&desc, kCompute32F, kR32F) == 0, "desc");
              EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescEpilogue, &kind, sizeof kind) == 0, "EPILOGUE");
              EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescBiasPointer, &dbias, sizeof dbias) == 0, "BIAS_POINTER");
              EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescBiasType, &type, sizeof type) == 0, "BIAS_DATA_TYPE");
              void *la = layout(type, m, k, m), *lb = layout(type, k, n, k), *lc = layout(type, m, n, m);
              const float alpha = 1.25f, beta = 0.5f;
              EXPECT(cublasLtMatmul(handle, desc, &alpha, da, la, db, lb, &beta, dc, lc, dc, lc, nullptr, nullptr, 0,
                                    nullptr) == 0,
                     "cublasLtMatmul epilogue %u type %d", kind, type);
              const std::vector<double> product = reference(kOpN, kOpN, m, n, k, 1.25, a, m, b, k, 0.5, c, m);
              std::vector<double> want(product.size());
              for (int j = 0; j < n; ++j) {
                for (int i = 0; i < m; ++i) want[i + j * m] = epilogue(kind, product[i + j * m], bias.at(i));
              }
              const std::string what = "epilogue " + std::to_string(kind) + " type " + std::to_string(type);
              compare(what.c_str(), download(dc, type, c.count()), want, m, n, m, tolerance(type, kCompute32F, k));
              for (void* l : {la, lb, lc}) cublasLtMatrixLayoutDestroy(l);
              cublasLtMatmulDescDestroy(desc);
              for (void* p : {da, db, dc, dbias}) cudaFree(p);
            }
          }
          EXPECT(cublasLtDestroy(handle) == 0, "cublasLtDestroy");
        }) == 0);
}

TEST_CASE("cuBLASLt says what it does not serve: aux epilogues, row-major layouts, unknown attributes, stub exports",
          "[cublaslt]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          void* handle = nullptr;
          EXPECT(cublasLtCreate(&handle) == 0, "cublasLtCreate");
          void* desc = nullptr;
          EXPECT(cublasLtMatmulDescCreate(&desc, kCompute32F, kR32F) == 0, "desc");
          void* l = layout(kR32F, 8, 8, 8);
          void* preference = nullptr;
          EXPECT(cublasLtMatmulPreferenceCreate(&preference) == 0, "preference");
          HeuristicResult result{};
          int returned = -1;
          EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescEpilogue, &kEpilogueReluAux, sizeof kEpilogueReluAux) == 0,
                 "setting an epilogue is accepted, as cuBLASLt does");
          EXPECT(cublasLtMatmulAlgoGetHeuristic(handle, desc, l, l, l, l, preference, 1, &result, &returned) ==
                         kNotSupported && returned == 0,
                 "a ReLU epilogue with an auxiliary output: no algorithm (%d)", returned);
          const float one = 1.0f;
          void* d = nullptr;
          EXPECT(cudaMalloc(&d, 8 * 8 * 4) == 0, "cudaMalloc");
          EXPECT(cublasLtMatmul(handle, desc, &one, d, l, d, l, &one, d, l, d, l, nullptr, nullptr, 0, nullptr) ==
                     kNotSupported,
                 "an auxiliary-output epilogue is refused by cublasLtMatmul too");
          const unsigned plain = 1;
          EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescEpilogue, &plain, sizeof plain) == 0, "default epilogue");
          const int row = 1;
          EXPECT(cublasLtMatrixLayoutSetAttribute(l, kLayoutOrder, &row, sizeof row) == 0, "row order");
          EXPECT(cublasLtMatmulAlgoGetHeuristic(handle, desc, l, l, l, l, preference, 1, &result, &returned) ==
                     kNotSupported,
                 "a row-major layout: no algorithm");
          // Attribute sizes are exact, and a size query answers without a buffer.
          EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescTransA, &plain, 8) == kInvalidValue, "a wrong size");
          std::size_t written = 0;
          EXPECT(cublasLtMatmulDescGetAttribute(desc, kDescPointerMode, nullptr, 0, &written) == 0 && written == 4,
                 "size query: %zu", written);
          EXPECT(cublasLtMatmulDescSetAttribute(desc, 9999, &plain, 4) == kNotSupported, "an unknown attribute");
          // Storage a program allocates itself (NVIDIA's inline cublasLtMatmulDescInit) works like a created one;
          // storage never initialized is refused.
          std::uint64_t storage[32] = {};
          EXPECT(cublasLtMatmulDescSetAttribute(storage, kDescTransA, &plain, 4) == kNotInitialized, "garbage desc");
          EXPECT(cublasLtMatmulDescInit_internal(storage, sizeof storage, kCompute32F, kR32F) == 0, "Init_internal");
          int ta = -1;
          EXPECT(cublasLtMatmulDescGetAttribute(storage, kDescTransA, &ta, sizeof ta, &written) == 0 && ta == kOpN,
                 "initialized desc: TRANSA %d", ta);
          // An export the shim does not serve is a stub that says so.
          EXPECT(cublasLtMatrixTransform(handle, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                         nullptr, nullptr) == kNotSupported,
                 "cublasLtMatrixTransform");
          EXPECT(cublasLtGetVersion() == 130100, "version %zu", cublasLtGetVersion());
          void* destroyed = nullptr;
          EXPECT(cublasLtCreate(&destroyed) == 0 && cublasLtDestroy(destroyed) == 0, "create and destroy");
          EXPECT(std::string(cublasLtGetStatusName(kNotSupported)) == "CUBLAS_STATUS_NOT_SUPPORTED", "status name");
          cudaFree(d);
          EXPECT(cublasLtMatrixLayoutDestroy(l) == 0 && cublasLtMatmulDescDestroy(desc) == 0 &&
                     cublasLtMatmulPreferenceDestroy(preference) == 0 && cublasLtDestroy(handle) == 0,
                 "destroy");
        }) == 0);
}

TEST_CASE("cublasLtMatmul cannot reach memory that is not the session's", "[cublaslt][security]") {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, [] {
          void* handle = nullptr;
          EXPECT(cublasLtCreate(&handle) == 0, "cublasLtCreate");
          void* desc = nullptr;
          EXPECT(cublasLtMatmulDescCreate(&desc, kCompute32F, kR32F) == 0, "desc");
          void* small = layout(kR32F, 8, 8, 8);
          void* large = layout(kR32F, 64, 64, 64);
          void* d = nullptr;
          EXPECT(cudaMalloc(&d, 8 * 8 * 4) == 0, "cudaMalloc");
          const float one = 1.0f, zero = 0.0f;
          EXPECT(cublasLtMatmul(handle, desc, &one, d, small, d, small, &zero, d, small, d, small, nullptr, nullptr, 0,
                                nullptr) == 0,
                 "in bounds");
          EXPECT(cublasLtMatmul(handle, desc, &one, d, large, d, large, &zero, d, large, d, large, nullptr, nullptr, 0,
                                nullptr) != 0,
                 "a 64x64 product on an 8x8 allocation is refused");
          void* foreign = reinterpret_cast<void*>(0x7f0000000000ull);
          EXPECT(cublasLtMatmul(handle, desc, &one, foreign, small, d, small, &zero, d, small, d, small, nullptr, nullptr,
                                0, nullptr) != 0,
                 "an address the session does not own is refused");
          EXPECT(cublasLtMatmul(handle, desc, &one, d, small, d, small, &one, foreign, small, d, small, nullptr, nullptr,
                                0, nullptr) != 0,
                 "a C the session does not own is refused");
          EXPECT(cublasLtMatmul(handle, desc, &one, d, small, d, small, &zero, d, small, foreign, small, nullptr, nullptr,
                                0, nullptr) != 0,
                 "a D the session does not own is refused");
          EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescEpilogue, &kEpilogueBias, sizeof kEpilogueBias) == 0, "bias");
          EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescBiasPointer, &foreign, sizeof foreign) == 0, "bias pointer");
          EXPECT(cublasLtMatmul(handle, desc, &one, d, small, d, small, &zero, d, small, d, small, nullptr, nullptr, 0,
                                nullptr) != 0,
                 "a bias vector the session does not own is refused");
          void* tail = static_cast<char*>(d) + 8 * 8 * 4 - 16;  // the last 4 floats: too short for 8 rows
          EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescBiasPointer, &tail, sizeof tail) == 0, "bias pointer");
          EXPECT(cublasLtMatmul(handle, desc, &one, d, small, d, small, &zero, d, small, d, small, nullptr, nullptr, 0,
                                nullptr) != 0,
                 "a bias vector that runs past its allocation is refused");
          cudaFree(d);
          EXPECT(cublasLtMatrixLayoutDestroy(small) == 0 && cublasLtMatrixLayoutDestroy(large) == 0 &&
                     cublasLtMatmulDescDestroy(desc) == 0 && cublasLtDestroy(handle) == 0,
                 "destroy");
        }) == 0);
}

// Memory that is live on the device but another session's: only the broker's own check stands
// between it and a hostile cublasLtMatmul (the device would accept the address).
TEST_CASE("cublasLtMatmul cannot write or read another session's memory, as D, C, A or the bias",
          "[cublaslt][security]") {
  TempDir dir;
  BrokerProcess broker(dir);
  REQUIRE(testing::wait_until_listening(broker.socket_path()));
  int address_pipe[2], done_pipe[2];
  REQUIRE(::pipe(address_pipe) == 0);
  REQUIRE(::pipe(done_pipe) == 0);
  const pid_t victim = testing::run_in_child([&] {
    ::setenv("GPUBROKER_SOCKET", broker.socket_path().c_str(), 1);
    std::vector<float> pattern(64, 3.0f);
    void* mine = nullptr;
    EXPECT(cudaMalloc(&mine, 64 * 4) == 0 && cudaMemcpy(mine, pattern.data(), 64 * 4, kHostToDevice) == 0, "victim");
    EXPECT(::write(address_pipe[1], &mine, sizeof mine) == sizeof mine, "send the address");
    char byte;
    EXPECT(::read(done_pipe[0], &byte, 1) == 1, "wait for the attacker");
    std::vector<float> back(64);
    EXPECT(cudaMemcpy(back.data(), mine, 64 * 4, kDeviceToHost) == 0 && back == pattern,
           "the victim's memory is as it wrote it");
    return testing::child_status();
  });
  void* theirs = nullptr;
  REQUIRE(::read(address_pipe[0], &theirs, sizeof theirs) == sizeof theirs);
  const pid_t attacker = testing::run_in_child([&] {
    ::setenv("GPUBROKER_SOCKET", broker.socket_path().c_str(), 1);
    void* handle = nullptr;
    EXPECT(cublasLtCreate(&handle) == 0, "cublasLtCreate");
    void* desc = nullptr;
    EXPECT(cublasLtMatmulDescCreate(&desc, kCompute32F, kR32F) == 0, "desc");
    void* l = layout(kR32F, 8, 8, 8);
    void* own = nullptr;
    EXPECT(cudaMalloc(&own, 64 * 4) == 0, "cudaMalloc");
    const float one = 1.0f, zero = 0.0f;
    EXPECT(cublasLtMatmul(handle, desc, &one, own, l, own, l, &zero, own, l, theirs, l, nullptr, nullptr, 0, nullptr) ==
               kInvalidValue,
           "their memory as D");
    EXPECT(cublasLtMatmul(handle, desc, &one, theirs, l, own, l, &zero, own, l, own, l, nullptr, nullptr, 0, nullptr) ==
               kInvalidValue,
           "their memory as A");
    EXPECT(cublasLtMatmul(handle, desc, &one, own, l, own, l, &one, theirs, l, own, l, nullptr, nullptr, 0, nullptr) ==
               kInvalidValue,
           "their memory as C");
    EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescEpilogue, &kEpilogueBias, sizeof kEpilogueBias) == 0, "bias");
    EXPECT(cublasLtMatmulDescSetAttribute(desc, kDescBiasPointer, &theirs, sizeof theirs) == 0, "bias pointer");
    EXPECT(cublasLtMatmul(handle, desc, &one, own, l, own, l, &zero, own, l, own, l, nullptr, nullptr, 0, nullptr) ==
               kInvalidValue,
           "their memory as the bias");
    EXPECT(cudaDeviceSynchronize() == 0, "the attacker's session is still served");
    return testing::child_status();
  });
  CHECK(testing::wait_for_child(attacker) == 0);
  CHECK(::write(done_pipe[1], "x", 1) == 1);
  CHECK(testing::wait_for_child(victim) == 0);
  for (int fd : {address_pipe[0], address_pipe[1], done_pipe[0], done_pipe[1]}) ::close(fd);
}

// ---- BLAS-1 ---------------------------------------------------------------------------------

extern "C" {
int cublasSaxpy_v2(void*, int, const float*, const float*, int, float*, int);
int cublasDaxpy_v2(void*, int, const double*, const double*, int, double*, int);
int cublasSscal_v2(void*, int, const float*, float*, int);
int cublasDscal_v2(void*, int, const double*, double*, int);
int cublasSdot_v2(void*, int, const float*, int, const float*, int, float*);
int cublasDdot_v2(void*, int, const double*, int, const double*, int, double*);
int cublasSnrm2_v2(void*, int, const float*, int, float*);
int cublasDnrm2_v2(void*, int, const double*, int, double*);
int cublasSasum_v2(void*, int, const float*, int, float*);
int cublasDasum_v2(void*, int, const double*, int, double*);
int cublasIsamax_v2(void*, int, const float*, int, int*);
int cublasIdamax_v2(void*, int, const double*, int, int*);
int cublasIsamin_v2(void*, int, const float*, int, int*);
int cublasIdamin_v2(void*, int, const double*, int, int*);
int cublasScopy_v2(void*, int, const float*, int, float*, int);
int cublasDcopy_v2(void*, int, const double*, int, double*, int);
int cublasSswap_v2(void*, int, float*, int, float*, int);
int cublasDswap_v2(void*, int, double*, int, double*, int);
float cublasSdot(int, const float*, int, const float*, int);
double cublasDnrm2(int, const double*, int);
int cublasIdamax(int, const double*, int);
void cublasDaxpy(int, double, const double*, int, double*, int);
int cublasGetError();
int cublasInit();
int cublasShutdown();
}

namespace {

// The typed BLAS-1 functions of one element type, so that one test body checks S and D.
template <class T>
struct Level1;
#define GPUBROKER_TEST_LEVEL1(T, U, l)                                                                      \
  template <>                                                                                             \
  struct Level1<T> {                                                                                      \
    static constexpr auto axpy = cublas##U##axpy_v2, scal = cublas##U##scal_v2;                            \
    static constexpr auto dot = cublas##U##dot_v2;                                                        \
    static constexpr auto nrm2 = cublas##U##nrm2_v2, asum = cublas##U##asum_v2;                            \
    static constexpr auto amax = cublasI##l##amax_v2, amin = cublasI##l##amin_v2;                          \
    static constexpr auto copy = cublas##U##copy_v2;                                                      \
    static constexpr auto swap = cublas##U##swap_v2;                                                      \
    static constexpr double tolerance = sizeof(T) == 4 ? 1e-5 : 1e-12;                                    \
  };
GPUBROKER_TEST_LEVEL1(float, S, s)
GPUBROKER_TEST_LEVEL1(double, D, d)
#undef GPUBROKER_TEST_LEVEL1

// Index of element i of a strided vector of n (reference BLAS: a negative increment starts at the end).
std::size_t at(int n, int inc, int i) { return static_cast<std::size_t>(inc >= 0 ? i * inc : (n - 1 - i) * -inc); }

template <class T>
void* upload_values(const std::vector<T>& values) {
  void* d = nullptr;
  EXPECT(cudaMalloc(&d, values.size() * sizeof(T)) == 0 && cudaMemcpy(d, values.data(), values.size() * sizeof(T), kHostToDevice) == 0,
         "upload");
  return d;
}

template <class T>
std::vector<T> download_values(const void* d, std::size_t count) {
  std::vector<T> out(count);
  EXPECT(cudaMemcpy(out.data(), d, count * sizeof(T), kDeviceToHost) == 0, "download");
  return out;
}

template <class T>
bool near(double got, double want) {
  return std::fabs(got - want) <= Level1<T>::tolerance * std::max(1.0, std::fabs(want));
}

// Every BLAS-1 function of type T on strided vectors (x every 2nd element, y backwards), each
// checked against a reference computed here in double.
template <class T>
void level1_matches_reference(void* handle, std::mt19937& rng) {
  using L = Level1<T>;
  const int n = 11, incx = 2, incy = -3;
  std::uniform_real_distribution<double> value(-2.0, 2.0);
  std::vector<T> x(static_cast<std::size_t>(n * incx)), y(static_cast<std::size_t>(n * 3));
  for (T& v : x) v = static_cast<T>(value(rng));
  for (T& v : y) v = static_cast<T>(value(rng));
  auto* dx = static_cast<T*>(upload_values(x));
  auto* dy = static_cast<T*>(upload_values(y));
  const char* type = sizeof(T) == 4 ? "S" : "D";

  double dot = 0, squares = 0, sum = 0;
  int amax = 1, amin = 1;
  for (int i = 0; i < n; ++i) {
    const double xi = x[at(n, incx, i)];
    dot += xi * static_cast<double>(y[at(n, incy, i)]);
    squares += xi * xi;
    sum += std::fabs(xi);
    if (std::fabs(xi) > std::fabs(static_cast<double>(x[at(n, incx, amax - 1)]))) amax = i + 1;
    if (std::fabs(xi) < std::fabs(static_cast<double>(x[at(n, incx, amin - 1)]))) amin = i + 1;
  }
  T got{};
  int index = 0;
  EXPECT(L::dot(handle, n, dx, incx, dy, incy, &got) == 0 && near<T>(got, dot), "%sdot: %g, want %g", type, double(got), dot);
  EXPECT(L::nrm2(handle, n, dx, incx, &got) == 0 && near<T>(got, std::sqrt(squares)), "%snrm2: %g", type, double(got));
  EXPECT(L::asum(handle, n, dx, incx, &got) == 0 && near<T>(got, sum), "%sasum: %g, want %g", type, double(got), sum);
  EXPECT(L::amax(handle, n, dx, incx, &index) == 0 && index == amax, "I%samax: %d, want %d", type, index, amax);
  EXPECT(L::amin(handle, n, dx, incx, &index) == 0 && index == amin, "I%samin: %d, want %d", type, index, amin);
  EXPECT(L::nrm2(handle, n, dx, 0, &got) == 0 && got == 0, "%snrm2 with incx 0 is 0", type);

  // axpy: y += alpha x, y walked backwards.
  const T alpha = static_cast<T>(-0.75);
  std::vector<T> want = y;
  for (int i = 0; i < n; ++i) want[at(n, incy, i)] = static_cast<T>(want[at(n, incy, i)] + double(alpha) * x[at(n, incx, i)]);
  EXPECT(L::axpy(handle, n, &alpha, dx, incx, dy, incy) == 0, "%saxpy", type);
  std::vector<T> after = download_values<T>(dy, y.size());
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT(near<T>(after[i], want[i]), "%saxpy element %zu: %g, want %g", type, i, double(after[i]), double(want[i]));

  // scal: x *= alpha; the elements between the strided ones are untouched.
  std::vector<T> scaled = x;
  for (int i = 0; i < n; ++i) scaled[at(n, incx, i)] = static_cast<T>(double(alpha) * x[at(n, incx, i)]);
  EXPECT(L::scal(handle, n, &alpha, dx, incx) == 0, "%sscal", type);
  after = download_values<T>(dx, x.size());
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT(near<T>(after[i], scaled[i]), "%sscal element %zu", type, i);

  // swap, then copy back: x and y exchange their strided elements.
  const std::vector<T> x0 = download_values<T>(dx, x.size()), y0 = download_values<T>(dy, y.size());
  EXPECT(L::swap(handle, n, dx, incx, dy, incy) == 0, "%sswap", type);
  const std::vector<T> x1 = download_values<T>(dx, x.size()), y1 = download_values<T>(dy, y.size());
  for (int i = 0; i < n; ++i) {
    EXPECT(x1[at(n, incx, i)] == y0[at(n, incy, i)] && y1[at(n, incy, i)] == x0[at(n, incx, i)], "%sswap element %d", type, i);
  }
  EXPECT(L::copy(handle, n, dy, incy, dx, incx) == 0, "%scopy", type);
  const std::vector<T> x2 = download_values<T>(dx, x.size());
  for (int i = 0; i < n; ++i) EXPECT(x2[at(n, incx, i)] == x0[at(n, incx, i)], "%scopy element %d", type, i);
  cudaFree(dx);
  cudaFree(dy);
}

// A fresh broker, `body` in a child process of it, and the broker's clean exit.
void with_fresh_broker(const std::function<void()>& body) {
  TempDir dir;
  BrokerProcess broker(dir);
  CHECK(in_broker_child(broker, body) == 0);
  CHECK(broker.stop() == 0);  // a clean exit: nothing left behind, no sanitizer report
}

}  // namespace

TEST_CASE("the BLAS-1 functions match a reference for S and D, strided both ways, in host and device pointer mode",
          "[cublas][blas1]") {
  with_fresh_broker([] {
    std::mt19937 rng(11);
    void* handle = nullptr;
    EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate_v2");
    level1_matches_reference<float>(handle, rng);
    level1_matches_reference<double>(handle, rng);

    // Device pointer mode: alpha read from device memory, the result written there.
    EXPECT(cublasSetPointerMode_v2(handle, 1) == 0, "device pointer mode");
    const std::vector<double> x = {1, -2, 3, -4}, scalars = {0.5, 0};
    auto* dx = static_cast<double*>(upload_values(x));
    auto* ds = static_cast<double*>(upload_values(scalars));
    EXPECT(cublasDaxpy_v2(handle, 4, ds, dx, 1, dx, 1) == 0, "Daxpy, alpha on the device");  // x = 1.5 x
    EXPECT(cublasDdot_v2(handle, 4, dx, 1, dx, 1, ds + 1) == 0, "Ddot into device memory");
    EXPECT(cudaDeviceSynchronize() == 0, "synchronize");
    const double dot = download_values<double>(ds, 2)[1];
    EXPECT(dot == 2.25 * 30, "device-mode Ddot: %g", dot);
    int* index = reinterpret_cast<int*>(ds);
    EXPECT(cublasIdamax_v2(handle, 4, dx, 1, index) == 0, "Idamax into device memory");
    int found = 0;
    EXPECT(cudaMemcpy(&found, index, sizeof found, kDeviceToHost) == 0 && found == 4, "device-mode Idamax: %d", found);
    cudaFree(dx);
    cudaFree(ds);
    cublasDestroy_v2(handle);
  });
}

TEST_CASE("the legacy BLAS-1 functions compute through the same calls and report through cublasGetError",
          "[cublas][blas1]") {
  with_fresh_broker([] {
    EXPECT(cublasInit() == 0, "cublasInit");
    const std::vector<double> x = {3, -7, 2};
    const std::vector<float> f = {1, 2, 3};
    auto* dx = static_cast<double*>(upload_values(x));
    auto* df = static_cast<float*>(upload_values(f));
    const float sdot = cublasSdot(3, df, 1, df, 1);
    const int sdot_error = cublasGetError();
    EXPECT(sdot == 14.0f && sdot_error == 0, "cublasSdot: %g, cublasGetError %d", double(sdot), sdot_error);
    EXPECT(cublasIdamax(3, dx, 1) == 2 && cublasGetError() == 0, "cublasIdamax");
    cublasDaxpy(3, 2.0, dx, 1, dx, 1);  // x = 3x
    EXPECT(cublasGetError() == 0 && cublasDnrm2(3, dx, 1) == std::sqrt(9.0 * 62), "cublasDaxpy, cublasDnrm2");
    // A host vector: zero, and the broker's refusal for cublasGetError, which it clears.
    EXPECT(cublasSdot(3, f.data(), 1, f.data(), 1) == 0.0f, "a host vector gives 0");
    EXPECT(cublasGetError() == kInvalidValue && cublasGetError() == 0, "reported once");
    cudaFree(dx);
    cudaFree(df);
    EXPECT(cublasShutdown() == 0, "cublasShutdown");
  });
}

TEST_CASE("the broker refuses BLAS-1 calls that touch memory that is not the session's", "[cublas][blas1][security]") {
  with_fresh_broker([] {
    void* handle = nullptr;
    EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate_v2");
    void* d = nullptr;
    EXPECT(cudaMalloc(&d, 64 * sizeof(float)) == 0, "cudaMalloc");
    auto* f = static_cast<float*>(d);
    float result = 0;
    const float alpha = 2;
    EXPECT(cublasSdot_v2(handle, 33, f, 2, f, 1, &result) == kInvalidValue, "x past the end by one element");
    EXPECT(cublasSdot_v2(handle, 32, f, 2, f, 1, &result) == 0, "x up to the end");
    EXPECT(cublasSaxpy_v2(handle, 8, &alpha, f, 1, f + 60, -1) == kInvalidValue, "y backwards past the end");
    EXPECT(cublasSscal_v2(handle, 3, &alpha, f, 0x7fffffff) == kInvalidValue, "a span beyond any allocation");
    EXPECT(cublasSswap_v2(handle, 0x7fffffff, f, -0x7fffffff, f, 1) == kInvalidValue, "a span that overflows");
    float host[4] = {};
    EXPECT(cublasScopy_v2(handle, 4, f, 1, host, 1) == kInvalidValue, "a host destination");
    EXPECT(cublasSetPointerMode_v2(handle, 1) == 0, "device pointer mode");
    EXPECT(cublasSnrm2_v2(handle, 4, f, 1, &result) == kInvalidValue, "a device-mode result in host memory");
    EXPECT(cublasSnrm2_v2(handle, 4, f, 1, f + 64) == kInvalidValue, "a device-mode result past the end");
    EXPECT(cublasSnrm2_v2(reinterpret_cast<void*>(0x777), 4, f, 1, f) == kNotInitialized, "an unknown handle");
    cudaFree(d);
    cublasDestroy_v2(handle);
  });
}

// ---- GEMM, gemv and ger of S and D ------------------------------------------------------------

extern "C" {
int cublasDgemm_v2(void*, int, int, int, int, int, const double*, const double*, int, const double*, int, const double*,
                   double*, int);
int cublasDgemmStridedBatched(void*, int, int, int, int, int, const double*, const double*, int, long long,
                              const double*, int, long long, const double*, double*, int, long long, int);
int cublasSgemv_v2(void*, int, int, int, const float*, const float*, int, const float*, int, const float*, float*, int);
int cublasDgemv_v2(void*, int, int, int, const double*, const double*, int, const double*, int, const double*, double*,
                   int);
int cublasSger_v2(void*, int, int, const float*, const float*, int, const float*, int, float*, int);
int cublasDger_v2(void*, int, int, const double*, const double*, int, const double*, int, double*, int);
}

namespace {

template <class T>
struct Level23;
template <>
struct Level23<float> {
  static constexpr auto gemv = cublasSgemv_v2;
  static constexpr auto ger = cublasSger_v2;
};
template <>
struct Level23<double> {
  static constexpr auto gemv = cublasDgemv_v2;
  static constexpr auto ger = cublasDger_v2;
};

template <class T>
std::vector<T> random_values(std::size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<double> value(-1.0, 1.0);
  std::vector<T> out(count);
  for (T& v : out) v = static_cast<T>(value(rng));
  return out;
}

// gemv of both transposes (x every 2nd element, y every 3rd) and ger, against references computed here.
template <class T>
void gemv_and_ger_match_reference(void* handle, std::mt19937& rng) {
  const int m = 7, n = 5, lda = 9;
  const char* type = sizeof(T) == 4 ? "S" : "D";
  const std::vector<T> a = random_values<T>(std::size_t(lda) * n, rng);
  auto* da = static_cast<T*>(upload_values(a));
  for (int trans : {kOpN, kOpT}) {
    const int rows = trans == kOpN ? m : n, columns = trans == kOpN ? n : m;
    const std::vector<T> x = random_values<T>(std::size_t(columns) * 2, rng), y = random_values<T>(std::size_t(rows) * 3, rng);
    auto* dx = static_cast<T*>(upload_values(x));
    auto* dy = static_cast<T*>(upload_values(y));
    const T alpha = static_cast<T>(1.25), beta = static_cast<T>(-0.5);
    EXPECT(Level23<T>::gemv(handle, trans, m, n, &alpha, da, lda, dx, 2, &beta, dy, 3) == 0, "%sgemv op %d", type, trans);
    const std::vector<T> got = download_values<T>(dy, y.size());
    for (int i = 0; i < rows; ++i) {
      double sum = 0;
      for (int j = 0; j < columns; ++j) {
        const double aij = trans == kOpN ? a[std::size_t(j) * lda + i] : a[std::size_t(i) * lda + j];
        sum += aij * x[std::size_t(j) * 2];
      }
      const double want = double(alpha) * sum + double(beta) * y[std::size_t(i) * 3];
      EXPECT(near<T>(got[std::size_t(i) * 3], want), "%sgemv op %d row %d: %g, want %g", type, trans, i,
             double(got[std::size_t(i) * 3]), want);
    }
    for (std::size_t i = 0; i < y.size(); ++i) {
      EXPECT(i % 3 == 0 || got[i] == y[i], "%sgemv wrote element %zu between the strided ones", type, i);
    }
    EXPECT(Level23<T>::gemv(handle, trans, m, n, &alpha, da, lda, dx, -2, &beta, dy, 3) == 15, "%sgemv: a negative increment is not served", type);
    EXPECT(Level23<T>::gemv(handle, trans, m, n, &alpha, da, lda, dx, 0, &beta, dy, 3) == kInvalidValue, "%sgemv: increment 0", type);
    cudaFree(dx);
    cudaFree(dy);
  }
  // ger: A += alpha x y^T, x every 2nd element, y every 3rd.
  const std::vector<T> x = random_values<T>(std::size_t(m) * 2, rng), y = random_values<T>(std::size_t(n) * 3, rng);
  auto* dx = static_cast<T*>(upload_values(x));
  auto* dy = static_cast<T*>(upload_values(y));
  const T alpha = static_cast<T>(0.75);
  EXPECT(Level23<T>::ger(handle, m, n, &alpha, dx, 2, dy, 3, da, lda) == 0, "%sger", type);
  const std::vector<T> got = download_values<T>(da, a.size());
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < lda; ++i) {
      const std::size_t at_ij = std::size_t(j) * lda + i;
      const double want = i < m ? a[at_ij] + double(alpha) * x[std::size_t(i) * 2] * y[std::size_t(j) * 3] : a[at_ij];
      EXPECT(near<T>(got[at_ij], want), "%sger (%d, %d): %g, want %g", type, i, j, double(got[at_ij]), want);
    }
  }
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(da);
}

}  // namespace

TEST_CASE("cublasDgemm_v2 and cublasDgemmStridedBatched compute in double; gemv and ger of S and D match a reference",
          "[cublas][fp64]") {
  with_fresh_broker([] {
    std::mt19937 rng(17);
    void* handle = nullptr;
    EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate_v2");
    // C (m x n) = alpha A^T B + beta C for two batch members, A k x m, B k x n, all with ld 12.
    const int m = 9, n = 6, k = 11, ld = 12, batch = 2;
    const long long stride = static_cast<long long>(ld) * ld;
    const std::vector<double> a = random_values<double>(std::size_t(stride) * batch, rng);
    const std::vector<double> b = random_values<double>(std::size_t(stride) * batch, rng);
    const std::vector<double> c = random_values<double>(std::size_t(stride) * batch, rng);
    auto* da = static_cast<double*>(upload_values(a));
    auto* db = static_cast<double*>(upload_values(b));
    auto* dc = static_cast<double*>(upload_values(c));
    const double alpha = 1.0 / 3.0, beta = -0.25;
    EXPECT(cublasDgemmStridedBatched(handle, kOpT, kOpN, m, n, k, &alpha, da, ld, stride, db, ld, stride, &beta, dc, ld,
                                     stride, batch) == 0,
           "DgemmStridedBatched");
    std::vector<double> got = download_values<double>(dc, c.size());
    for (int member = 0; member < batch; ++member) {
      const std::size_t base = std::size_t(member) * std::size_t(stride);
      for (int j = 0; j < n; ++j) {
        for (int i = 0; i < m; ++i) {
          double sum = 0;
          for (int p = 0; p < k; ++p) sum += a[base + std::size_t(i) * ld + p] * b[base + std::size_t(j) * ld + p];
          const double want = alpha * sum + beta * c[base + std::size_t(j) * ld + i];
          const double have = got[base + std::size_t(j) * ld + i];
          // Double precision throughout: a float computation would miss by about 1e-7.
          EXPECT(std::fabs(have - want) <= 1e-13, "Dgemm member %d (%d, %d): %.17g, want %.17g", member, i, j, have, want);
        }
      }
    }
    EXPECT(cublasDgemm_v2(handle, kOpT, kOpN, m, n, k, &alpha, da, ld, db, ld, &beta, dc, ld) == 0, "Dgemm_v2");
    EXPECT(cublasDgemm_v2(handle, kOpN, kOpN, 64, 64, 64, &alpha, da, 64, db, 64, &beta, dc + stride * batch - 1, 64) ==
               kInvalidValue,
           "Dgemm: C past the end");
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    gemv_and_ger_match_reference<float>(handle, rng);
    gemv_and_ger_match_reference<double>(handle, rng);
    cublasDestroy_v2(handle);
  });
}

extern "C" {
int cublasSetAtomicsMode(void*, int);
int cublasGetAtomicsMode(void*, int*);
int cublasGetPointerMode_v2(void*, int*);
}

TEST_CASE("the pointer and atomics modes are kept per handle and read back", "[cublas]") {
  with_fresh_broker([] {
    void *first = nullptr, *second = nullptr;
    EXPECT(cublasCreate_v2(&first) == 0 && cublasCreate_v2(&second) == 0, "two handles");
    int mode = -1;
    EXPECT(cublasSetAtomicsMode(first, 1) == 0 && cublasGetAtomicsMode(first, &mode) == 0 && mode == 1, "atomics allowed");
    EXPECT(cublasGetAtomicsMode(second, &mode) == 0 && mode == 0, "the other handle keeps the default");
    EXPECT(cublasSetAtomicsMode(first, 2) == kInvalidValue && cublasGetAtomicsMode(first, &mode) == 0 && mode == 1,
           "an unknown mode is refused and changes nothing");
    EXPECT(cublasSetPointerMode_v2(second, 1) == 0 && cublasGetPointerMode_v2(second, &mode) == 0 && mode == 1, "device mode");
    EXPECT(cublasSetPointerMode_v2(second, 7) == kInvalidValue, "an unknown pointer mode");
    EXPECT(cublasGetAtomicsMode(second, nullptr) == kInvalidValue, "no place for the answer");
    EXPECT(cublasSetAtomicsMode(reinterpret_cast<void*>(0x999), 0) == kNotInitialized, "an unknown handle");
    cublasDestroy_v2(first);
    cublasDestroy_v2(second);
  });
}

// ---- batched LU ---------------------------------------------------------------------------------

extern "C" {
int cublasSgetrfBatched(void*, int, float* const*, int, int*, int*, int);
int cublasDgetrfBatched(void*, int, double* const*, int, int*, int*, int);
int cublasSgetrsBatched(void*, int, int, int, const float* const*, int, const int*, float* const*, int, int*, int);
int cublasDgetrsBatched(void*, int, int, int, const double* const*, int, const int*, double* const*, int, int*, int);
int cublasSgetriBatched(void*, int, const float* const*, int, const int*, float* const*, int, int*, int);
int cublasDgetriBatched(void*, int, const double* const*, int, const int*, double* const*, int, int*, int);
}

namespace {

template <class T>
struct Lu;
template <>
struct Lu<float> {
  static constexpr auto getrf = cublasSgetrfBatched;
  static constexpr auto getrs = cublasSgetrsBatched;
  static constexpr auto getri = cublasSgetriBatched;
};
template <>
struct Lu<double> {
  static constexpr auto getrf = cublasDgetrfBatched;
  static constexpr auto getrs = cublasDgetrsBatched;
  static constexpr auto getri = cublasDgetriBatched;
};

template <class T>
int getrf_batched(void* handle, int n, T* const* arrays, int lda, int* pivots, int* info, int batch) {
  return Lu<T>::getrf(handle, n, arrays, lda, pivots, info, batch);
}

// A (n x n, lda) times X (n x columns, ldx) at (row, column), from host copies.
template <class T>
double product_at(const std::vector<T>& a, std::size_t a_base, int lda, const std::vector<T>& x, std::size_t x_base, int ldx,
                  int n, int row, int column, bool transpose) {
  double sum = 0;
  for (int k = 0; k < n; ++k) {
    const double aik = transpose ? a[a_base + std::size_t(row) * lda + k] : a[a_base + std::size_t(k) * lda + row];
    sum += aik * x[x_base + std::size_t(column) * ldx + k];
  }
  return sum;
}

// getrs (both transposes) and getri on the two regular matrices factored in `arrays`: A X = B and
// A inv(A) = I, checked against the original matrices `original`.
template <class T>
void solve_and_invert_match(void* handle, const std::vector<T>& original, void* arrays, int* pivots, int n, int lda) {
  const char* type = sizeof(T) == 4 ? "S" : "D";
  const int nrhs = 3, ldb = n + 1;
  std::mt19937 rng(3);
  const double tolerance = sizeof(T) == 4 ? 1e-3 : 1e-10;
  for (int trans : {kOpN, kOpT}) {
    const std::vector<T> rhs = random_values<T>(std::size_t(ldb) * nrhs * 2, rng);
    auto* db = static_cast<T*>(upload_values(rhs));
    const std::vector<std::uint64_t> b_pointers = {reinterpret_cast<std::uint64_t>(db),
                                                   reinterpret_cast<std::uint64_t>(db + std::size_t(ldb) * nrhs)};
    void* b_arrays = upload_values(b_pointers);
    int info = -1;
    EXPECT(Lu<T>::getrs(handle, trans, n, nrhs, static_cast<const T* const*>(arrays), lda, pivots,
                        static_cast<T* const*>(b_arrays), ldb, &info, 2) == 0 && info == 0,
           "%sgetrsBatched op %d (info %d)", type, trans, info);
    const std::vector<T> x = download_values<T>(db, rhs.size());
    for (int m = 0; m < 2; ++m)
      for (int c = 0; c < nrhs; ++c)
        for (int r = 0; r < n; ++r) {
          const std::size_t xb = std::size_t(m) * ldb * nrhs;
          const double got = product_at(original, std::size_t(m) * lda * n, lda, x, xb, ldb, n, r, c, trans == kOpT);
          EXPECT(std::fabs(got - rhs[xb + std::size_t(c) * ldb + r]) < tolerance, "%sgetrs op %d matrix %d: (A X)(%d,%d) %g vs B %g",
                 type, trans, m, r, c, got, double(rhs[xb + std::size_t(c) * ldb + r]));
        }
    EXPECT(Lu<T>::getrs(handle, trans, n, nrhs, static_cast<const T* const*>(arrays), lda, pivots,
                        static_cast<T* const*>(b_arrays), n - 1, &info, 2) == kInvalidValue && info == -9,
           "%sgetrs: ldb below n is argument 9 (info %d)", type, info);
    cudaFree(db);
    cudaFree(b_arrays);
  }
  const std::vector<T> zeros(std::size_t(n) * n * 2);
  auto* dc = static_cast<T*>(upload_values(zeros));
  const std::vector<std::uint64_t> c_pointers = {reinterpret_cast<std::uint64_t>(dc),
                                                 reinterpret_cast<std::uint64_t>(dc + std::size_t(n) * n)};
  void* c_arrays = upload_values(c_pointers);
  auto* info = static_cast<int*>(upload_values(std::vector<int>(2, -1)));
  EXPECT(Lu<T>::getri(handle, n, static_cast<const T* const*>(arrays), lda, pivots, static_cast<T* const*>(c_arrays), n, info,
                      2) == 0,
         "%sgetriBatched", type);
  const std::vector<T> inverse = download_values<T>(dc, zeros.size());
  const std::vector<int> infos = download_values<int>(info, 2);
  EXPECT(infos[0] == 0 && infos[1] == 0, "%sgetri info %d %d", type, infos[0], infos[1]);
  for (int m = 0; m < 2; ++m)
    for (int c = 0; c < n; ++c)
      for (int r = 0; r < n; ++r) {
        const double got = product_at(original, std::size_t(m) * lda * n, lda, inverse, std::size_t(m) * n * n, n, n, r, c, false);
        EXPECT(std::fabs(got - (r == c ? 1.0 : 0.0)) < tolerance, "%sgetri matrix %d: (A inv(A))(%d,%d) = %g", type, m, r, c, got);
      }
  cudaFree(dc);
  cudaFree(c_arrays);
  cudaFree(info);
}

// Two random matrices and a singular one, factored with pivoting: L U must equal the rows of A
// swapped as the pivots say (checked by applying them, as LAPACK's getrs does), and info names the
// singular matrix's zero pivot.
template <class T>
void getrf_matches_reference(void* handle, std::mt19937& rng) {
  const int n = 6, lda = 8, batch = 3;
  const char* type = sizeof(T) == 4 ? "S" : "D";
  std::vector<T> all = random_values<T>(std::size_t(lda) * n * batch, rng);
  const std::size_t singular = std::size_t(2) * lda * n;
  for (int c = 0; c < n; ++c) all[singular + std::size_t(c) * lda + 3] = 0;  // row 3 of matrix 2: zeros
  auto* device = static_cast<T*>(upload_values(all));
  std::vector<std::uint64_t> pointers;
  for (int i = 0; i < batch; ++i) pointers.push_back(reinterpret_cast<std::uint64_t>(device + std::size_t(i) * lda * n));
  void* arrays = upload_values(pointers);
  auto* pivots = static_cast<int*>(upload_values(std::vector<int>(std::size_t(n) * batch)));
  auto* info = static_cast<int*>(upload_values(std::vector<int>(batch, -1)));
  EXPECT(getrf_batched<T>(handle, n, static_cast<T* const*>(arrays), lda, pivots, info, batch) == 0, "%sgetrfBatched", type);
  const std::vector<T> lu = download_values<T>(device, all.size());
  const std::vector<int> p = download_values<int>(pivots, std::size_t(n) * batch), infos = download_values<int>(info, batch);
  EXPECT(infos[0] == 0 && infos[1] == 0 && infos[2] > 0, "%sgetrfBatched info %d %d %d", type, infos[0], infos[1], infos[2]);
  for (int m = 0; m < 2; ++m) {
    const std::size_t base = std::size_t(m) * lda * n;
    std::vector<double> a(std::size_t(n) * n);  // A with the pivots' row swaps applied, in order
    for (int c = 0; c < n; ++c)
      for (int r = 0; r < n; ++r) a[std::size_t(c) * n + r] = all[base + std::size_t(c) * lda + r];
    for (int k = 0; k < n; ++k) {
      const int swap_with = p[std::size_t(m) * n + k] - 1;
      EXPECT(swap_with >= k && swap_with < n, "%sgetrf pivot %d of matrix %d: %d", type, k, m, swap_with + 1);
      if (swap_with >= k && swap_with < n)
        for (int c = 0; c < n; ++c) std::swap(a[std::size_t(c) * n + k], a[std::size_t(c) * n + swap_with]);
    }
    for (int c = 0; c < n; ++c) {
      for (int r = 0; r < n; ++r) {
        double sum = 0;
        for (int k = 0; k <= std::min(r, c); ++k) {
          const double l = k == r ? 1.0 : double(lu[base + std::size_t(k) * lda + r]);
          sum += l * double(lu[base + std::size_t(c) * lda + k]);
        }
        EXPECT(near<T>(sum, a[std::size_t(c) * n + r]) || std::fabs(sum - a[std::size_t(c) * n + r]) < 1e-5,
               "%sgetrf matrix %d: (L U)(%d, %d) = %g, P A has %g", type, m, r, c, sum, a[std::size_t(c) * n + r]);
      }
    }
  }
  solve_and_invert_match<T>(handle, all, arrays, pivots, n, lda);
  // The broker checks what the array names, and the outputs.
  const std::vector<std::uint64_t> outside = {reinterpret_cast<std::uint64_t>(all.data())};
  void* bad = upload_values(outside);
  EXPECT(getrf_batched<T>(handle, n, static_cast<T* const*>(bad), lda, pivots, info, 1) == kInvalidValue,
         "%sgetrf: a host matrix in the array", type);
  int host_info = 0;
  EXPECT(getrf_batched<T>(handle, n, static_cast<T* const*>(arrays), lda, pivots, &host_info, batch) == kInvalidValue,
         "%sgetrf: info in host memory", type);
  EXPECT(getrf_batched<T>(handle, n, static_cast<T* const*>(arrays), lda, pivots + 1, info, batch) == kInvalidValue,
         "%sgetrf: pivots past the end", type);
  cudaFree(bad);
  cudaFree(device);
  cudaFree(arrays);
  cudaFree(pivots);
  cudaFree(info);
}

}  // namespace

TEST_CASE("the batched LU (getrf, getrs, getri) of S and D computes on each matrix of its device arrays, checked by the broker",
          "[cublas][lu]") {
  with_fresh_broker([] {
    std::mt19937 rng(23);
    void* handle = nullptr;
    EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate_v2");
    getrf_matches_reference<float>(handle, rng);
    getrf_matches_reference<double>(handle, rng);
    cublasDestroy_v2(handle);
  });
}

// ---- TRSM of S and D, single and batched --------------------------------------------------------

extern "C" {
int cublasStrsm_v2(void*, int, int, int, int, int, int, const float*, const float*, int, float*, int);
int cublasDtrsm_v2(void*, int, int, int, int, int, int, const double*, const double*, int, double*, int);
int cublasDtrsmBatched(void*, int, int, int, int, int, int, const double*, const double* const*, int, double* const*, int,
                       int);
}

namespace {

template <class T>
struct Trsm;
template <>
struct Trsm<float> {
  static constexpr auto single = cublasStrsm_v2;
};
template <>
struct Trsm<double> {
  static constexpr auto single = cublasDtrsm_v2;
};

// op(A)(row, column) of a triangular A (the `lower` or upper triangle read, unit diagonal or not).
template <class T>
double triangle(const std::vector<T>& a, int lda, bool lower, bool transpose, bool unit, int row, int column) {
  const int r = transpose ? column : row, c = transpose ? row : column;
  if (r == c) return unit ? 1.0 : double(a[std::size_t(c) * lda + r]);
  return (lower ? r > c : r < c) ? double(a[std::size_t(c) * lda + r]) : 0.0;
}

// X = alpha op(A)^-1 B (left) or alpha B op(A)^-1 (right) for every side, fill and transpose: op(A) X
// (or X op(A)) must give alpha B back.
template <class T>
void trsm_matches_reference(void* handle, std::mt19937& rng) {
  const char* type = sizeof(T) == 4 ? "S" : "D";
  const int m = 6, n = 4, ld = 7;
  const double tolerance = sizeof(T) == 4 ? 1e-3 : 1e-10;
  const T alpha = static_cast<T>(1.5);
  for (int side : {0, 1}) {     // CUBLAS_SIDE_LEFT, RIGHT
    for (int uplo : {0, 1}) {   // CUBLAS_FILL_MODE_LOWER, UPPER
      for (int trans : {kOpN, kOpT}) {
        const int k = side == 0 ? m : n;
        std::vector<T> a = random_values<T>(std::size_t(ld) * k, rng);
        for (int i = 0; i < k; ++i) a[std::size_t(i) * ld + i] = static_cast<T>(2.0 + i);  // well away from singular
        const std::vector<T> b = random_values<T>(std::size_t(ld) * n, rng);
        auto* da = static_cast<T*>(upload_values(a));
        auto* db = static_cast<T*>(upload_values(b));
        EXPECT(Trsm<T>::single(handle, side, uplo, trans, 0, m, n, &alpha, da, ld, db, ld) == 0, "%strsm_v2 %d %d %d", type, side,
               uplo, trans);
        const std::vector<T> x = download_values<T>(db, b.size());
        for (int c = 0; c < n; ++c) {
          for (int r = 0; r < m; ++r) {
            double got = 0;
            for (int q = 0; q < k; ++q) {
              got += side == 0 ? triangle(a, ld, uplo == 0, trans == kOpT, false, r, q) * x[std::size_t(c) * ld + q]
                               : x[std::size_t(q) * ld + r] * triangle(a, ld, uplo == 0, trans == kOpT, false, q, c);
            }
            const double want = double(alpha) * b[std::size_t(c) * ld + r];
            EXPECT(std::fabs(got - want) < tolerance, "%strsm side %d uplo %d op %d (%d, %d): %g, want %g", type, side, uplo,
                   trans, r, c, got, want);
          }
        }
        cudaFree(da);
        cudaFree(db);
      }
    }
  }
}

}  // namespace

TEST_CASE("cublasStrsm_v2, Dtrsm_v2 and DtrsmBatched solve the triangular systems a reference checks", "[cublas][trsm]") {
  with_fresh_broker([] {
    std::mt19937 rng(29);
    void* handle = nullptr;
    EXPECT(cublasCreate_v2(&handle) == 0, "cublasCreate_v2");
    trsm_matches_reference<float>(handle, rng);
    trsm_matches_reference<double>(handle, rng);
    // DtrsmBatched: two lower systems of 3 x 3 through device pointer arrays; a matrix outside the
    // session's memory is refused.
    const std::vector<double> a = {2, 1, 1, 0, 4, 1, 0, 0, 8, 3, 1, 1, 0, 5, 1, 0, 0, 7};  // two column-major lower triangles
    const std::vector<double> b = {2, 5, 17, 3, 6, 13};
    auto* da = static_cast<double*>(upload_values(a));
    auto* db = static_cast<double*>(upload_values(b));
    const std::vector<std::uint64_t> pointers = {reinterpret_cast<std::uint64_t>(da), reinterpret_cast<std::uint64_t>(da + 9),
                                                 reinterpret_cast<std::uint64_t>(db), reinterpret_cast<std::uint64_t>(db + 3)};
    auto* arrays = static_cast<std::uint64_t*>(upload_values(pointers));
    const double one = 1.0;
    EXPECT(cublasDtrsmBatched(handle, 0, 0, kOpN, 0, 3, 1, &one, reinterpret_cast<const double* const*>(arrays), 3,
                              reinterpret_cast<double* const*>(arrays + 2), 3, 2) == 0,
           "DtrsmBatched");
    const std::vector<double> x = download_values<double>(db, 6);
    // 2 x0 = 2; x0 + 4 x1 = 5; x0 + x1 + 8 x2 = 17  ->  1, 1, 15/8; and 3 y0 = 3; y0 + 5 y1 = 6; y0 + y1 + 7 y2 = 13 -> 1, 1, 11/7
    EXPECT(std::fabs(x[0] - 1) < 1e-12 && std::fabs(x[1] - 1) < 1e-12 && std::fabs(x[2] - 15.0 / 8) < 1e-12 &&
               std::fabs(x[3] - 1) < 1e-12 && std::fabs(x[4] - 1) < 1e-12 && std::fabs(x[5] - 11.0 / 7) < 1e-12,
           "DtrsmBatched values %g %g %g %g %g %g", x[0], x[1], x[2], x[3], x[4], x[5]);
    double host[9] = {};
    EXPECT(cublasDtrsm_v2(handle, 0, 0, kOpN, 0, 3, 1, &one, host, 3, db, 3) == kInvalidValue, "a host A");
    EXPECT(cublasDtrsm_v2(handle, 0, 0, kOpN, 0, 3, 2, &one, da, 3, db + 1, 3) == kInvalidValue, "B past the end");
    cudaFree(da);
    cudaFree(db);
    cudaFree(arrays);
    cublasDestroy_v2(handle);
  });
}
