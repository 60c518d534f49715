// A cuBLAS program as NVIDIA's samples are written (simpleCUBLAS, batchCUBLAS, simpleCUBLAS_LU),
// built by nvcc against the toolkit's own cublas_v2.h and linked to libcublas.so, run unmodified
// against the shims and a sim broker. The samples themselves cannot be fetched on a CI machine
// (no network but apt and pip), so this program uses the same calls the same way: the helper
// copies, BLAS-1 (handle and legacy API), gemv, ger, SGEMM, DGEMM, the strided batch and the
// batched LU, each checked against a reference computed here on the CPU. Prints one line per
// check and exits non-zero if any failed.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

// The legacy API's (cublas.h) names, which cublas_v2.h maps to the handle API's: a program of one
// API calls the other's through the exported symbols, as these declare them.
extern "C" float legacy_sdot(int n, const float* x, int incx, const float* y, int incy) __asm__("cublasSdot");
extern "C" cublasStatus_t legacy_get_error() __asm__("cublasGetError");

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "PASS" : "FAIL", what);
  if (!ok) ++failures;
}

bool close(double got, double want, double tolerance) { return std::fabs(got - want) <= tolerance * std::fmax(1.0, std::fabs(want)); }

template <class T>
T* device_copy(const std::vector<T>& host) {
  T* d = nullptr;
  if (cudaMalloc(&d, host.size() * sizeof(T)) != cudaSuccess) return nullptr;
  if (cublasSetVector(static_cast<int>(host.size()), sizeof(T), host.data(), 1, d, 1) != CUBLAS_STATUS_SUCCESS) return nullptr;
  return d;
}

template <class T>
std::vector<T> host_copy(const T* d, std::size_t count) {
  std::vector<T> out(count);
  cublasGetVector(static_cast<int>(count), sizeof(T), d, 1, out.data(), 1);
  return out;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> value(-1.0, 1.0);
  cublasHandle_t handle;
  check(cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS, "cublasCreate");

  // SetMatrix/GetMatrix with leading dimensions wider than the rows.
  const int rows = 5, cols = 4, host_ld = 7, device_ld = 6;
  std::vector<float> matrix(host_ld * cols), back(host_ld * cols, -1.0f);
  for (float& v : matrix) v = static_cast<float>(value(rng));
  float* dm = nullptr;
  cudaMalloc(&dm, device_ld * cols * sizeof(float));
  check(cublasSetMatrix(rows, cols, sizeof(float), matrix.data(), host_ld, dm, device_ld) == CUBLAS_STATUS_SUCCESS &&
            cublasGetMatrix(rows, cols, sizeof(float), dm, device_ld, back.data(), host_ld) == CUBLAS_STATUS_SUCCESS,
        "cublasSetMatrix/GetMatrix");
  bool same = true;
  for (int c = 0; c < cols; ++c)
    for (int r = 0; r < rows; ++r) same = same && back[c * host_ld + r] == matrix[c * host_ld + r];
  check(same, "the matrix came back");
  check(cublasSetMatrix(rows, cols, sizeof(float), matrix.data(), 3, dm, device_ld) == CUBLAS_STATUS_INVALID_VALUE,
        "a leading dimension below the rows is refused");

  // BLAS-1 in double through the handle API, and in float through the legacy one.
  const int n = 100;
  std::vector<double> x(n), y(n);
  for (int i = 0; i < n; ++i) x[i] = value(rng), y[i] = value(rng);
  double *dx = device_copy(x), *dy = device_copy(y);
  double dot = 0, squares = 0, sum = 0;
  int largest = 0;
  for (int i = 0; i < n; ++i) {
    dot += x[i] * y[i], squares += x[i] * x[i], sum += std::fabs(x[i]);
    if (std::fabs(x[i]) > std::fabs(x[largest])) largest = i;
  }
  double result = 0;
  int index = 0;
  check(cublasDdot(handle, n, dx, 1, dy, 1, &result) == CUBLAS_STATUS_SUCCESS && close(result, dot, 1e-12), "cublasDdot");
  check(cublasDnrm2(handle, n, dx, 1, &result) == CUBLAS_STATUS_SUCCESS && close(result, std::sqrt(squares), 1e-12), "cublasDnrm2");
  check(cublasDasum(handle, n, dx, 1, &result) == CUBLAS_STATUS_SUCCESS && close(result, sum, 1e-12), "cublasDasum");
  check(cublasIdamax(handle, n, dx, 1, &index) == CUBLAS_STATUS_SUCCESS && index == largest + 1, "cublasIdamax (1-based)");
  const double alpha = 0.5;
  check(cublasDaxpy(handle, n, &alpha, dx, 1, dy, 1) == CUBLAS_STATUS_SUCCESS, "cublasDaxpy");
  std::vector<double> after = host_copy(dy, n);
  bool axpy = true;
  for (int i = 0; i < n; ++i) axpy = axpy && close(after[i], y[i] + alpha * x[i], 1e-15);
  check(axpy, "cublasDaxpy's values");
  std::vector<float> f(n);
  for (int i = 0; i < n; ++i) f[i] = static_cast<float>(x[i]);
  float* df = device_copy(f);
  double fdot = 0;
  for (float v : f) fdot += double(v) * v;
  check(close(legacy_sdot(n, df, 1, df, 1), fdot, 1e-5) && legacy_get_error() == CUBLAS_STATUS_SUCCESS, "legacy cublasSdot");

  // Device pointer mode: the result lands in device memory.
  double* dresult = nullptr;
  cudaMalloc(&dresult, sizeof(double));
  cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_DEVICE);
  check(cublasDdot(handle, n, dx, 1, dx, 1, dresult) == CUBLAS_STATUS_SUCCESS, "cublasDdot into device memory");
  cudaMemcpy(&result, dresult, sizeof result, cudaMemcpyDeviceToHost);
  check(close(result, squares, 1e-12), "the device-mode result");
  cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST);

  // SGEMM and DGEMM, C = alpha op(A) op(B) + beta C, against the CPU.
  const int m = 33, k = 17, p = 21;
  std::vector<double> a(m * k), b(k * p), c(m * p);
  for (double& v : a) v = value(rng);
  for (double& v : b) v = value(rng);
  for (double& v : c) v = value(rng);
  double *da = device_copy(a), *db = device_copy(b), *dc = device_copy(c);
  const double beta = -1.5;
  check(cublasDgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, p, k, &alpha, da, m, db, k, &beta, dc, m) == CUBLAS_STATUS_SUCCESS,
        "cublasDgemm");
  std::vector<double> product = host_copy(dc, c.size());
  bool gemm = true;
  for (int j = 0; j < p; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0;
      for (int q = 0; q < k; ++q) s += a[q * m + i] * b[j * k + q];
      gemm = gemm && close(product[j * m + i], alpha * s + beta * c[j * m + i], 1e-13);
    }
  check(gemm, "cublasDgemm's values (double precision)");

  // gemv: y = A^T x for the m x k matrix A (x of m elements, y of k).
  std::vector<double> gx(m), gy(k, 0.0);
  for (double& v : gx) v = value(rng);
  double *dgx = device_copy(gx), *dgy = device_copy(gy);
  const double one = 1.0, zero = 0.0;
  check(cublasDgemv(handle, CUBLAS_OP_T, m, k, &one, da, m, dgx, 1, &zero, dgy, 1) == CUBLAS_STATUS_SUCCESS, "cublasDgemv");
  std::vector<double> gemv = host_copy(dgy, k);
  bool gemv_ok = true;
  for (int j = 0; j < k; ++j) {
    double s = 0;
    for (int i = 0; i < m; ++i) s += a[j * m + i] * gx[i];
    gemv_ok = gemv_ok && close(gemv[j], s, 1e-13);
  }
  check(gemv_ok, "cublasDgemv's values");

  // Batched LU with pivoting: L U reproduces the row-swapped matrix.
  const int size = 8;
  std::vector<double> lu(size * size);
  for (double& v : lu) v = value(rng);
  double* dlu = device_copy(lu);
  double** array = nullptr;
  int *pivots = nullptr, *info = nullptr;
  cudaMalloc(&array, sizeof(double*));
  cudaMalloc(&pivots, size * sizeof(int));
  cudaMalloc(&info, sizeof(int));
  cudaMemcpy(array, &dlu, sizeof dlu, cudaMemcpyHostToDevice);
  check(cublasDgetrfBatched(handle, size, array, size, pivots, info, 1) == CUBLAS_STATUS_SUCCESS, "cublasDgetrfBatched");
  std::vector<double> factors = host_copy(dlu, lu.size());
  std::vector<int> pivot(size);
  int singular = -1;
  cudaMemcpy(pivot.data(), pivots, size * sizeof(int), cudaMemcpyDeviceToHost);
  cudaMemcpy(&singular, info, sizeof singular, cudaMemcpyDeviceToHost);
  std::vector<double> swapped = lu;
  for (int q = 0; q < size; ++q)
    for (int col = 0; col < size; ++col) std::swap(swapped[col * size + q], swapped[col * size + pivot[q] - 1]);
  bool lu_ok = singular == 0;
  for (int col = 0; col < size; ++col)
    for (int row = 0; row < size; ++row) {
      double s = 0;
      for (int q = 0; q <= std::min(row, col); ++q) s += (q == row ? 1.0 : factors[q * size + row]) * factors[col * size + q];
      lu_ok = lu_ok && close(s, swapped[col * size + row], 1e-12);
    }
  check(lu_ok, "L U equals P A");

  cublasDestroy(handle);
  std::printf("%s: %d check(s) failed\n", failures == 0 ? "cuBLAS program passed" : "cuBLAS program FAILED", failures);
  return failures == 0 ? 0 : 1;
}
