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

// ---- batched LU (LuOp) -------------------------------------------------------------------------

namespace gpubroker::sim {

namespace {

ElementType lu_type(const LuOp& lu) { return lu.is_double ? ElementType::kFloat64 : ElementType::kFloat32; }

bool lu_outputs_valid(const LuOp& lu) {
  const std::size_t count = std::size_t(lu.batch);
  const bool infos = lu.function != LuFunction::kSolve;
  return device_range_valid(lu.a_array, count * sizeof(void*), false) &&
         (lu.function == LuFunction::kFactor || device_range_valid(lu.b_array, count * sizeof(void*), false)) &&
         (!infos || device_range_valid(lu.info, count * sizeof(int), true)) &&
         (lu.pivots == 0 ||
          device_range_valid(lu.pivots, count * std::size_t(lu.n) * sizeof(int), lu.function == LuFunction::kFactor));
}

// A column-major matrix of device memory, read whole into double and written back.
struct Dense {
  const LuOp& op;
  std::uintptr_t base;
  std::size_t rows, columns, ld;
  std::vector<double> values;

  std::uintptr_t address(std::size_t row, std::size_t column) const {
    return base + (column * ld + row) * (op.is_double ? sizeof(double) : sizeof(float));
  }
  double& at(std::size_t row, std::size_t column) { return values[column * rows + row]; }
  void read() {
    values.resize(rows * columns);
    for (std::size_t c = 0; c < columns; ++c)
      for (std::size_t r = 0; r < rows; ++r) at(r, c) = load_double(lu_type(op), address(r, c));
  }
  void write() {
    VectorOp typed;
    typed.is_double = op.is_double;
    for (std::size_t c = 0; c < columns; ++c)
      for (std::size_t r = 0; r < rows; ++r) store(typed, address(r, c), at(r, c));
  }
};

std::uintptr_t member(std::uintptr_t array, int index) {
  std::uintptr_t address = 0;
  std::memcpy(&address, reinterpret_cast<const void*>(array + std::size_t(index) * sizeof(void*)), sizeof address);
  return address;
}

int pivot_of(const LuOp& lu, int index, std::size_t k) {
  int row = 0;
  std::memcpy(&row, reinterpret_cast<const void*>(lu.pivots + (std::size_t(index) * std::size_t(lu.n) + k) * sizeof(int)),
              sizeof row);
  return row;
}

// Doolittle's elimination, column by column: the pivot is the first largest magnitude of the column
// at or below the diagonal (no search without pivoting). The first zero pivot's 1-based column, or 0.
int factor(const LuOp& lu, int index, Dense& a) {
  const std::size_t n = a.rows;
  int info = 0;
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t pivot = k;
    if (lu.pivots != 0) {
      for (std::size_t r = k + 1; r < n; ++r)
        if (std::fabs(a.at(r, k)) > std::fabs(a.at(pivot, k))) pivot = r;
      const int one_based = static_cast<int>(pivot + 1);
      std::memcpy(reinterpret_cast<void*>(lu.pivots + (std::size_t(index) * n + k) * sizeof(int)), &one_based, sizeof(int));
      if (pivot != k)
        for (std::size_t c = 0; c < n; ++c) std::swap(a.at(k, c), a.at(pivot, c));
    }
    if (a.at(k, k) == 0.0) {
      if (info == 0) info = static_cast<int>(k + 1);
      continue;
    }
    for (std::size_t r = k + 1; r < n; ++r) {
      a.at(r, k) /= a.at(k, k);
      for (std::size_t c = k + 1; c < n; ++c) a.at(r, c) -= a.at(r, k) * a.at(k, c);
    }
  }
  return info;
}

// op(A) X = B for A = P^T L U (factored), column by column of B: A X = B is L U X = P B (rows
// swapped in pivot order, then the two triangles); A^T X = B is U^T L^T P X = B (the triangles
// transposed, then the swaps undone in reverse order).
void solve(const LuOp& lu, int index, Dense& a, Dense& b) {
  const std::size_t n = a.rows;
  for (std::size_t column = 0; column < b.columns; ++column) {
    auto x = [&](std::size_t i) -> double& { return b.at(i, column); };
    auto swap_rows = [&](std::size_t k) {
      if (lu.pivots == 0) return;
      const int row = pivot_of(lu, index, k);
      if (row >= 1 && std::size_t(row) <= n) std::swap(x(k), x(std::size_t(row - 1)));
    };
    if (!lu.transpose) {
      for (std::size_t k = 0; k < n; ++k) swap_rows(k);
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < i; ++j) x(i) -= a.at(i, j) * x(j);  // L, unit diagonal
      for (std::size_t i = n; i-- > 0;) {
        for (std::size_t j = i + 1; j < n; ++j) x(i) -= a.at(i, j) * x(j);
        x(i) /= a.at(i, i);
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) {  // U^T, lower triangular
        for (std::size_t j = 0; j < i; ++j) x(i) -= a.at(j, i) * x(j);
        x(i) /= a.at(i, i);
      }
      for (std::size_t i = n; i-- > 0;)
        for (std::size_t j = i + 1; j < n; ++j) x(i) -= a.at(j, i) * x(j);  // L^T, unit diagonal
      for (std::size_t k = n; k-- > 0;) swap_rows(k);
    }
  }
}

}  // namespace

bool lu_ranges_valid_at_call(const LuOp& lu) { return lu_outputs_valid(lu); }

cuda::CUresult execute_lu(const LuOp& lu) {
  if (!lu_outputs_valid(lu)) return cuda::CUDA_ERROR_ILLEGAL_ADDRESS;
  const auto n = std::size_t(lu.n);
  const std::size_t b_columns = lu.function == LuFunction::kSolve ? std::size_t(lu.nrhs) : n;
  for (int index = 0; index < lu.batch; ++index) {
    Dense a{lu, member(lu.a_array, index), n, n, std::size_t(lu.lda), {}};
    const bool writes_a = lu.function == LuFunction::kFactor;
    if (!device_range_valid(a.base, matrix_span_bytes(lu.n, lu.n, lu.lda, lu_type(lu)), writes_a))
      return cuda::CUDA_ERROR_ILLEGAL_ADDRESS;
    a.read();
    if (lu.function == LuFunction::kFactor) {
      const int info = factor(lu, index, a);
      a.write();
      std::memcpy(reinterpret_cast<void*>(lu.info + std::size_t(index) * sizeof(int)), &info, sizeof info);
      continue;
    }
    Dense b{lu, member(lu.b_array, index), n, b_columns, std::size_t(lu.ldb), {}};
    if (!device_range_valid(b.base, matrix_span_bytes(lu.n, int(b_columns), lu.ldb, lu_type(lu)), true))
      return cuda::CUDA_ERROR_ILLEGAL_ADDRESS;
    int info = 0;
    if (lu.function == LuFunction::kInvert) {
      for (std::size_t k = 0; k < n && info == 0; ++k)
        if (a.at(k, k) == 0.0) info = static_cast<int>(k + 1);
      std::memcpy(reinterpret_cast<void*>(lu.info + std::size_t(index) * sizeof(int)), &info, sizeof info);
      if (info != 0) continue;
      b.values.assign(n * n, 0.0);
      for (std::size_t k = 0; k < n; ++k) b.at(k, k) = 1.0;  // inv(A) solves A X = I
    } else {
      b.read();
    }
    solve(lu, index, a, b);
    b.write();
  }
  return cuda::CUDA_SUCCESS;
}

}  // namespace gpubroker::sim
