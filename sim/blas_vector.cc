// The sim's BLAS-1 (sim/blas.h, VectorOp) and batched LU factorization (LuOp): each a loop on the
// stream's worker, in double whatever the element type, rounded once to it.
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "sim/blas.h"
#include "sim/driver_access.h"

namespace gpubroker::sim {

namespace {

std::size_t element_size(const VectorOp& v) { return v.is_double ? sizeof(double) : sizeof(float); }

double load(const VectorOp& v, std::uintptr_t address) {
  if (v.is_double) {
    double value;
    std::memcpy(&value, reinterpret_cast<const void*>(address), sizeof value);
    return value;
  }
  float value;
  std::memcpy(&value, reinterpret_cast<const void*>(address), sizeof value);
  return value;
}

void store(const VectorOp& v, std::uintptr_t address, double value) {
  if (v.is_double) {
    std::memcpy(reinterpret_cast<void*>(address), &value, sizeof value);
    return;
  }
  const auto narrow = static_cast<float>(value);
  std::memcpy(reinterpret_cast<void*>(address), &narrow, sizeof narrow);
}

// Element i of a vector of n: from the far end when the increment is negative (reference BLAS).
std::uintptr_t element_at(const VectorOp& v, std::uintptr_t base, int increment, int i) {
  const std::size_t step = increment >= 0 ? std::size_t(i) * std::size_t(increment)
                                          : std::size_t(v.n - 1 - i) * std::size_t(-std::int64_t(increment));
  return base + step * element_size(v);
}

bool reads_only_x(VectorFunction f) {
  return f == VectorFunction::kScal || f == VectorFunction::kNrm2 || f == VectorFunction::kAsum ||
         f == VectorFunction::kAmax || f == VectorFunction::kAmin;
}

bool uses_y(VectorFunction f) {
  return f == VectorFunction::kAxpy || f == VectorFunction::kDot || f == VectorFunction::kCopy ||
         f == VectorFunction::kSwap;
}

// Bytes of the result: an int index, or one element.
std::size_t result_bytes(const VectorOp& v) {
  if (v.function == VectorFunction::kAmax || v.function == VectorFunction::kAmin) return sizeof(int);
  return element_size(v);
}

bool has_result(VectorFunction f) {
  return f == VectorFunction::kDot || f == VectorFunction::kNrm2 || f == VectorFunction::kAsum ||
         f == VectorFunction::kAmax || f == VectorFunction::kAmin;
}

// Whether the function reads x at all: the x-only ones do nothing for a non-positive increment.
bool touches_x(const VectorOp& v) { return v.n > 0 && !(reads_only_x(v.function) && v.incx <= 0); }

void write_result(const VectorOp& v, double value, int index) {
  void* destination = reinterpret_cast<void*>(v.result);
  if (v.function == VectorFunction::kAmax || v.function == VectorFunction::kAmin) {
    std::memcpy(destination, &index, sizeof index);
  } else {
    store(v, v.result, value);
  }
}

}  // namespace

std::uint64_t vector_span_bytes(int n, int increment, std::size_t element) {
  if (n <= 0) return 0;
  const std::uint64_t stride = increment < 0 ? std::uint64_t(-std::int64_t(increment)) : std::uint64_t(increment);
  std::uint64_t elements = 0;
  if (__builtin_mul_overflow(std::uint64_t(n - 1), stride, &elements) || __builtin_add_overflow(elements, 1, &elements) ||
      __builtin_mul_overflow(elements, element, &elements))
    return UINT64_MAX;
  return elements;
}

bool vector_ranges_valid(const VectorOp& v) {
  const std::size_t element = element_size(v);
  const bool writes_x = v.function == VectorFunction::kScal || v.function == VectorFunction::kSwap;
  const bool writes_y = v.function != VectorFunction::kDot;
  if (v.alpha_address != 0 && !device_range_valid(v.alpha_address, element, false)) return false;
  if (touches_x(v) && !device_range_valid(v.x, vector_span_bytes(v.n, v.incx, element), writes_x)) return false;
  if (v.n > 0 && uses_y(v.function) && !device_range_valid(v.y, vector_span_bytes(v.n, v.incy, element), writes_y))
    return false;
  return !has_result(v.function) || v.result_on_host || device_range_valid(v.result, result_bytes(v), true);
}

cuda::CUresult execute_vector(const VectorOp& v) {
  if (!vector_ranges_valid(v)) return cuda::CUDA_ERROR_ILLEGAL_ADDRESS;
  const double alpha = v.alpha_address != 0 ? load(v, v.alpha_address) : v.alpha;
  auto x = [&](int i) { return element_at(v, v.x, v.incx, i); };
  auto y = [&](int i) { return element_at(v, v.y, v.incy, i); };
  const int n = touches_x(v) ? v.n : 0;
  double sum = 0.0;
  int index = 0;  // 1-based; 0 for an empty vector
  double best = 0.0;
  for (int i = 0; i < n; ++i) {
    switch (v.function) {
      case VectorFunction::kAxpy: store(v, y(i), load(v, y(i)) + alpha * load(v, x(i))); break;
      case VectorFunction::kScal: store(v, x(i), alpha * load(v, x(i))); break;
      case VectorFunction::kDot: sum += load(v, x(i)) * load(v, y(i)); break;
      case VectorFunction::kNrm2: sum += load(v, x(i)) * load(v, x(i)); break;
      case VectorFunction::kAsum: sum += std::fabs(load(v, x(i))); break;
      case VectorFunction::kAmax:
      case VectorFunction::kAmin: {
        const double magnitude = std::fabs(load(v, x(i)));
        const bool better = v.function == VectorFunction::kAmax ? magnitude > best : magnitude < best;
        if (index == 0 || better) {
          index = i + 1;
          best = magnitude;
        }
        break;
      }
      case VectorFunction::kCopy: store(v, y(i), load(v, x(i))); break;
      case VectorFunction::kSwap: {
        const double from_x = load(v, x(i));
        store(v, x(i), load(v, y(i)));
        store(v, y(i), from_x);
        break;
      }
    }
  }
  if (has_result(v.function)) write_result(v, v.function == VectorFunction::kNrm2 ? std::sqrt(sum) : sum, index);
  return cuda::CUDA_SUCCESS;
}

}  // namespace gpubroker::sim

// ---- LU factorization (LuOp) ----------------------------------------------------------------

namespace gpubroker::sim {

namespace {

std::size_t lu_element(const LuOp& lu) { return lu.is_double ? sizeof(double) : sizeof(float); }

bool lu_outputs_valid(const LuOp& lu) {
  const std::size_t count = std::size_t(lu.batch);
  return device_range_valid(lu.a_array, count * sizeof(void*), false) &&
         device_range_valid(lu.info, count * sizeof(int), true) &&
         (lu.pivots == 0 || device_range_valid(lu.pivots, count * std::size_t(lu.n) * sizeof(int), true));
}

}  // namespace

bool lu_ranges_valid_at_call(const LuOp& lu) { return lu_outputs_valid(lu); }

// Doolittle's elimination, column by column, in double whatever the element type: the pivot is
// the first largest magnitude of the column at or below the diagonal (no search without pivoting).
cuda::CUresult execute_lu(const LuOp& lu) {
  if (!lu_outputs_valid(lu)) return cuda::CUDA_ERROR_ILLEGAL_ADDRESS;
  const std::size_t element = lu_element(lu), n = std::size_t(lu.n), ld = std::size_t(lu.lda);
  std::vector<double> a(n * n);
  for (int index = 0; index < lu.batch; ++index) {
    std::uintptr_t base = 0;
    std::memcpy(&base, reinterpret_cast<const void*>(lu.a_array + std::size_t(index) * sizeof(void*)), sizeof base);
    if (!device_range_valid(base, matrix_span_bytes(lu.n, lu.n, lu.lda, lu.is_double ? ElementType::kFloat64 : ElementType::kFloat32), true))
      return cuda::CUDA_ERROR_ILLEGAL_ADDRESS;
    auto address = [&](std::size_t row, std::size_t column) { return base + (column * ld + row) * element; };
    VectorOp typed;  // load/store in the operation's element type
    typed.is_double = lu.is_double;
    for (std::size_t c = 0; c < n; ++c)
      for (std::size_t r = 0; r < n; ++r) a[c * n + r] = load(typed, address(r, c));
    int info = 0;
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t pivot = k;
      if (lu.pivots != 0) {
        for (std::size_t r = k + 1; r < n; ++r)
          if (std::fabs(a[k * n + r]) > std::fabs(a[k * n + pivot])) pivot = r;
        const int one_based = static_cast<int>(pivot + 1);
        std::memcpy(reinterpret_cast<void*>(lu.pivots + (std::size_t(index) * n + k) * sizeof(int)), &one_based, sizeof(int));
        if (pivot != k)
          for (std::size_t c = 0; c < n; ++c) std::swap(a[c * n + k], a[c * n + pivot]);
      }
      const double diagonal = a[k * n + k];
      if (diagonal == 0.0) {
        if (info == 0) info = static_cast<int>(k + 1);
        continue;
      }
      for (std::size_t r = k + 1; r < n; ++r) {
        const double factor = a[k * n + r] / diagonal;
        a[k * n + r] = factor;
        for (std::size_t c = k + 1; c < n; ++c) a[c * n + r] -= factor * a[c * n + k];
      }
    }
    for (std::size_t c = 0; c < n; ++c)
      for (std::size_t r = 0; r < n; ++r) store(typed, address(r, c), a[c * n + r]);
    std::memcpy(reinterpret_cast<void*>(lu.info + std::size_t(index) * sizeof(int)), &info, sizeof info);
  }
  return cuda::CUDA_SUCCESS;
}

}  // namespace gpubroker::sim
