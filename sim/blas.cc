#include "sim/blas.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "sim/driver_access.h"
#include "gpubroker/sim/float16.h"

namespace gpubroker::sim {

double load_double(ElementType type, std::uintptr_t address) {
  if (type != ElementType::kFloat64) return load_element(type, address);
  double value;
  std::memcpy(&value, reinterpret_cast<const void*>(address), sizeof value);
  return value;
}

float load_element(ElementType type, std::uintptr_t address) {
  const void* source = reinterpret_cast<const void*>(address);
  if (type == ElementType::kFloat64) return static_cast<float>(load_double(type, address));
  if (type == ElementType::kFloat32) {
    float value;
    std::memcpy(&value, source, sizeof value);
    return value;
  }
  std::uint16_t bits;
  std::memcpy(&bits, source, sizeof bits);
  return type == ElementType::kFloat16 ? half_to_float(bits) : bfloat16_to_float(bits);
}

namespace {

void store_double(std::uintptr_t address, double value) {
  std::memcpy(reinterpret_cast<void*>(address), &value, sizeof value);
}

void store(ElementType type, std::uintptr_t address, float value) {
  void* destination = reinterpret_cast<void*>(address);
  if (type == ElementType::kFloat64) return store_double(address, value);
  if (type == ElementType::kFloat32) {
    std::memcpy(destination, &value, sizeof value);
    return;
  }
  const std::uint16_t bits = type == ElementType::kFloat16 ? float_to_half(value) : float_to_bfloat16(value);
  std::memcpy(destination, &bits, sizeof bits);
}

// alpha and, unless `beta` is null, beta; false when device-mode scalars are not in device memory.
bool read_scalars(const BlasScalars& scalars, double* alpha, double* beta) {
  if (!scalars.on_device) {
    *alpha = scalars.alpha;
    if (beta != nullptr) *beta = scalars.beta;
    return true;
  }
  const std::size_t bytes = element_bytes(scalars.type);
  if (!device_range_valid(scalars.alpha_address, bytes, false)) return false;
  if (beta != nullptr && !device_range_valid(scalars.beta_address, bytes, false)) return false;
  *alpha = load_double(scalars.type, scalars.alpha_address);
  if (beta != nullptr) *beta = load_double(scalars.type, scalars.beta_address);
  return true;
}

// The device address of batch member `index`'s matrix; false when it cannot be read or formed.
bool member_address(const BlasOperand& operand, int index, std::uintptr_t* address) {
  if (operand.pointer_array) {
    // The array's range was checked as a whole before the first member.
    std::memcpy(address, reinterpret_cast<const void*>(operand.address + std::size_t(index) * sizeof(void*)),
                sizeof *address);
    return true;
  }
  long long offset = 0;
  if (__builtin_mul_overflow(operand.stride, static_cast<long long>(index), &offset) ||
      __builtin_mul_overflow(offset, static_cast<long long>(element_bytes(operand.type)), &offset))
    return false;
  *address = operand.address + static_cast<std::uintptr_t>(offset);  // wraps like the GPU's address arithmetic
  return true;
}

// Whether every matrix of the operand (rows x columns each) is live device memory: for strided
// operands the whole batch span at once, for pointer arrays the array itself (members are checked
// one at a time as they are read).
bool operand_valid(const BlasOperand& operand, int rows, int columns, int batch, bool write) {
  const std::uint64_t span = matrix_span_bytes(rows, columns, operand.ld, operand.type);
  if (span == 0) return true;
  if (operand.pointer_array) return device_range_valid(operand.address, std::size_t(batch) * sizeof(void*), false);
  long long last = 0;
  if (__builtin_mul_overflow(operand.stride, static_cast<long long>(batch - 1), &last) ||
      __builtin_mul_overflow(last, static_cast<long long>(element_bytes(operand.type)), &last))
    return false;
  // The batch covers [first member + min(0, last offset), first member + max(0, last offset) + span).
  const std::uint64_t distance = last < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(last) : std::uint64_t(last);
  if (last < 0 && distance > operand.address) return false;  // would wrap below address 0
  const std::uintptr_t first = last < 0 ? operand.address - distance : operand.address;
  std::uint64_t extent = 0;
  if (__builtin_add_overflow(distance, span, &extent)) return false;
  return device_range_valid(first, extent, write);
}

// op(X) (rows x columns), from a column-major matrix with leading dimension ld, as a dense
// column-major float matrix.
void pack(ElementType type, std::uintptr_t address, int ld, bool transpose, int rows, int columns,
          std::vector<float>& out) {
  out.resize(std::size_t(rows) * std::size_t(columns));
  const std::size_t element = element_bytes(type);
  for (int column = 0; column < columns; ++column) {
    float* destination = out.data() + std::size_t(column) * std::size_t(rows);
    if (!transpose) {  // op(X)(r, c) = X(r, c): one contiguous column
      const std::uintptr_t source = address + std::size_t(column) * std::size_t(ld) * element;
      if (type == ElementType::kFloat32) {
        std::memcpy(destination, reinterpret_cast<const void*>(source), std::size_t(rows) * sizeof(float));
      } else {
        for (int row = 0; row < rows; ++row) destination[row] = load_element(type, source + std::size_t(row) * element);
      }
    } else {  // op(X)(r, c) = X(c, r): a row of X
      const std::uintptr_t source = address + std::size_t(column) * element;
      for (int row = 0; row < rows; ++row)
        destination[row] = load_element(type, source + std::size_t(row) * std::size_t(ld) * element);
    }
  }
}

// Where one batch member's result goes, and what cuBLASLt's epilogue adds to it.
struct Output {
  const BlasOperand& operand;  // D, or C itself
  std::uintptr_t address;
  Activation activation;
  ElementType bias_type;
  std::uintptr_t bias;  // 0: none
};

float activate(Activation activation, float x) {
  switch (activation) {
    case Activation::kRelu:
      return x > 0.0f ? x : 0.0f;
    case Activation::kGelu:
      return 0.5f * x * (1.0f + std::tanh(0.7978845608f * (x + 0.044715f * x * x * x)));
    case Activation::kNone:
      break;
  }
  return x;
}

// out = epilogue(alpha * A * B + beta * C) for packed A (m x k) and B (k x n), C and out in device
// memory (out may be C). Blocked: a tile of kTileRows x kTileColumns accumulators stays in
// registers and L1 while k streams through.
void multiply(const std::vector<float>& a, const std::vector<float>& b, int m, int n, int k, float alpha,
              float beta, const BlasOperand& c, std::uintptr_t c_address, const Output& out) {
  constexpr int kTileRows = 64;
  constexpr int kTileColumns = 4;
  const std::size_t element = element_bytes(c.type);
  for (int row0 = 0; row0 < m; row0 += kTileRows) {
    const int rows = std::min(kTileRows, m - row0);
    for (int column0 = 0; column0 < n; column0 += kTileColumns) {
      const int columns = std::min(kTileColumns, n - column0);
      float sums[kTileColumns][kTileRows] = {};
      for (int p = 0; p < k; ++p) {
        const float* a_column = a.data() + std::size_t(p) * std::size_t(m) + std::size_t(row0);
        for (int j = 0; j < columns; ++j) {
          const float b_value = b[std::size_t(column0 + j) * std::size_t(k) + std::size_t(p)];
          float* sum = sums[j];
          for (int i = 0; i < rows; ++i) sum[i] += a_column[i] * b_value;
        }
      }
      const std::size_t out_element = element_bytes(out.operand.type);
      for (int j = 0; j < columns; ++j) {
        const std::uintptr_t column_address =
            c_address + (std::size_t(column0 + j) * std::size_t(c.ld) + std::size_t(row0)) * element;
        const std::uintptr_t out_column =
            out.address + (std::size_t(column0 + j) * std::size_t(out.operand.ld) + std::size_t(row0)) * out_element;
        for (int i = 0; i < rows; ++i) {
          float value = alpha * sums[j][i];
          if (beta != 0.0f) value += beta * load_element(c.type, column_address + std::size_t(i) * element);
          if (out.bias != 0) {
            value += load_element(out.bias_type, out.bias + std::size_t(row0 + i) * element_bytes(out.bias_type));
          }
          store(out.operand.type, out_column + std::size_t(i) * out_element, activate(out.activation, value));
        }
      }
    }
  }
}

// The FP64 GEMM of one batch member: C = alpha op(A) op(B) + beta C, each element a straightforward
// sum in double (C not read when beta is 0). FP64 has no epilogue (cuBLASLt matmuls are FP32/16).
void multiply_double(const GemmOp& gemm, std::uintptr_t a, std::uintptr_t b, std::uintptr_t c, int k, double alpha,
                     double beta) {
  auto at = [](std::uintptr_t base, int ld, bool transpose, int row, int column) {
    const int r = transpose ? column : row, col = transpose ? row : column;
    return load_double(ElementType::kFloat64, base + (std::size_t(col) * std::size_t(ld) + std::size_t(r)) * sizeof(double));
  };
  for (int j = 0; j < gemm.n; ++j) {
    for (int i = 0; i < gemm.m; ++i) {
      double sum = 0.0;
      for (int p = 0; p < k; ++p) sum += at(a, gemm.a.ld, gemm.transpose_a, i, p) * at(b, gemm.b.ld, gemm.transpose_b, p, j);
      const std::uintptr_t element = c + (std::size_t(j) * std::size_t(gemm.c.ld) + std::size_t(i)) * sizeof(double);
      store_double(element, alpha * sum + (beta != 0.0 ? beta * load_double(ElementType::kFloat64, element) : 0.0));
    }
  }
}

// C, and D and the bias where the GEMM has them: C is read when beta may be nonzero, and written
// unless the result goes to D.
bool epilogue_operands_valid(const GemmOp& gemm, bool reads_c) {
  const bool separate_d = gemm.d.address != 0;
  if (separate_d && !operand_valid(gemm.d, gemm.m, gemm.n, gemm.batch, true)) return false;
  if (gemm.bias.address != 0 && !operand_valid(gemm.bias, gemm.m, 1, gemm.batch, false)) return false;
  return (separate_d && !reads_c) || operand_valid(gemm.c, gemm.m, gemm.n, gemm.batch, !separate_d);
}

cuda::CUresult illegal_address(const char* what) {
  fmt::print(stderr, "sim: cuBLAS {}: an operand is outside live device memory (CUDA_ERROR_ILLEGAL_ADDRESS)\n",
             what);
  return cuda::CUDA_ERROR_ILLEGAL_ADDRESS;
}

}  // namespace

bool gemm_ranges_valid_at_call(const GemmOp& gemm) {
  const BlasScalars& scalars = gemm.scalars;
  if (scalars.on_device && (!device_range_valid(scalars.alpha_address, element_bytes(scalars.type), false) ||
                            !device_range_valid(scalars.beta_address, element_bytes(scalars.type), false)))
    return false;
  const bool reads_ab = gemm.k > 0 && (scalars.on_device || scalars.alpha != 0.0f);
  if (reads_ab && (!operand_valid(gemm.a, gemm.transpose_a ? gemm.k : gemm.m, gemm.transpose_a ? gemm.m : gemm.k,
                                  gemm.batch, false) ||
                   !operand_valid(gemm.b, gemm.transpose_b ? gemm.n : gemm.k, gemm.transpose_b ? gemm.k : gemm.n,
                                  gemm.batch, false)))
    return false;
  if (gemm.workspace_bytes != 0 && !device_range_valid(gemm.workspace, gemm.workspace_bytes, true)) return false;
  return epilogue_operands_valid(gemm, scalars.on_device || scalars.beta != 0.0f);
}

bool trsm_ranges_valid_at_call(const TrsmOp& trsm) {
  const std::size_t array_bytes = std::size_t(trsm.batch) * sizeof(void*);
  if (trsm.scalars.on_device && !device_range_valid(trsm.scalars.alpha_address, element_bytes(trsm.type), false))
    return false;
  return device_range_valid(trsm.a_array, array_bytes, false) && device_range_valid(trsm.b_array, array_bytes, false);
}

cuda::CUresult execute_gemm(const GemmOp& gemm) {
  double alpha_exact = 0.0;
  double beta_exact = 0.0;
  if (!read_scalars(gemm.scalars, &alpha_exact, &beta_exact)) return illegal_address("GEMM alpha/beta");
  const auto alpha = static_cast<float>(alpha_exact), beta = static_cast<float>(beta_exact);
  const bool fp64 = gemm.c.type == ElementType::kFloat64;
  // With alpha == 0 or k == 0, A and B are not read (as in cuBLAS): C = beta * C.
  const bool reads_ab = gemm.k > 0 && alpha_exact != 0.0;
  const int a_rows = gemm.transpose_a ? gemm.k : gemm.m;
  const int a_columns = gemm.transpose_a ? gemm.m : gemm.k;
  const int b_rows = gemm.transpose_b ? gemm.n : gemm.k;
  const int b_columns = gemm.transpose_b ? gemm.k : gemm.n;
  if ((reads_ab && (!operand_valid(gemm.a, a_rows, a_columns, gemm.batch, false) ||
                    !operand_valid(gemm.b, b_rows, b_columns, gemm.batch, false))) ||
      !epilogue_operands_valid(gemm, beta_exact != 0.0))
    return illegal_address("GEMM");
  if (gemm.workspace_bytes != 0) {
    if (!device_range_valid(gemm.workspace, gemm.workspace_bytes, true)) return illegal_address("GEMM workspace");
    constexpr unsigned char kScratch = 0xCB;
    std::memset(reinterpret_cast<void*>(gemm.workspace), kScratch, std::min<std::size_t>(gemm.workspace_bytes, 256));
  }

  std::vector<float> packed_a;
  std::vector<float> packed_b;
  const int k = reads_ab ? gemm.k : 0;
  for (int index = 0; index < gemm.batch; ++index) {
    std::uintptr_t a = 0;
    std::uintptr_t b = 0;
    std::uintptr_t c = 0;
    if (!member_address(gemm.c, index, &c)) return illegal_address("GEMM");
    if (gemm.c.pointer_array && !device_range_valid(c, matrix_span_bytes(gemm.m, gemm.n, gemm.c.ld, gemm.c.type), true))
      return illegal_address("batched GEMM (C array)");
    if (reads_ab) {
      if (!member_address(gemm.a, index, &a) || !member_address(gemm.b, index, &b)) return illegal_address("GEMM");
      if (gemm.a.pointer_array &&
          !device_range_valid(a, matrix_span_bytes(a_rows, a_columns, gemm.a.ld, gemm.a.type), false))
        return illegal_address("batched GEMM (A array)");
      if (gemm.b.pointer_array &&
          !device_range_valid(b, matrix_span_bytes(b_rows, b_columns, gemm.b.ld, gemm.b.type), false))
        return illegal_address("batched GEMM (B array)");
      if (!fp64) {
        pack(gemm.a.type, a, gemm.a.ld, gemm.transpose_a, gemm.m, k, packed_a);
        pack(gemm.b.type, b, gemm.b.ld, gemm.transpose_b, k, gemm.n, packed_b);
      }
    }
    if (fp64) {
      multiply_double(gemm, a, b, c, k, alpha_exact, beta_exact);
      continue;
    }
    std::uintptr_t d = c;
    std::uintptr_t bias = 0;
    if ((gemm.d.address != 0 && !member_address(gemm.d, index, &d)) ||
        (gemm.bias.address != 0 && !member_address(gemm.bias, index, &bias)))
      return illegal_address("GEMM");
    const Output out{gemm.d.address != 0 ? gemm.d : gemm.c, d, gemm.activation, gemm.bias.type, bias};
    multiply(packed_a, packed_b, gemm.m, gemm.n, k, alpha, beta, gemm.c, c, out);
  }
  return cuda::CUDA_SUCCESS;
}

cuda::CUresult execute_trsm(const TrsmOp& trsm) {
  double alpha_exact = 0.0;
  if (!read_scalars(trsm.scalars, &alpha_exact, nullptr)) return illegal_address("TRSM alpha");
  // FP32 solves round alpha to float first, as the API passes it.
  const double alpha = trsm.type == ElementType::kFloat64 ? alpha_exact : double(static_cast<float>(alpha_exact));
  const std::size_t width = element_bytes(trsm.type);
  auto store_value = [&](std::uintptr_t address, double value) {
    if (trsm.type == ElementType::kFloat64) {
      store_double(address, value);
    } else {
      store(trsm.type, address, static_cast<float>(value));
    }
  };
  const std::size_t array_bytes = std::size_t(trsm.batch) * sizeof(void*);
  if (!device_range_valid(trsm.a_array, array_bytes, false) || !device_range_valid(trsm.b_array, array_bytes, false))
    return illegal_address("batched TRSM (pointer arrays)");

  const int size = trsm.left ? trsm.m : trsm.n;  // op(A) is size x size
  // op(A) is lower triangular when A's lower triangle is read untransposed, or its upper transposed.
  const bool op_lower = trsm.lower != trsm.transpose;
  std::vector<double> op_a(std::size_t(size) * std::size_t(size));  // row-major, the triangle only
  std::vector<double> x(std::size_t(std::max(trsm.m, trsm.n)));
  for (int index = 0; index < trsm.batch; ++index) {
    std::uintptr_t a = 0;
    std::uintptr_t b = 0;
    std::memcpy(&a, reinterpret_cast<const void*>(trsm.a_array + std::size_t(index) * sizeof(void*)), sizeof a);
    std::memcpy(&b, reinterpret_cast<const void*>(trsm.b_array + std::size_t(index) * sizeof(void*)), sizeof b);
    if (!device_range_valid(b, matrix_span_bytes(trsm.m, trsm.n, trsm.ldb, trsm.type), true))
      return illegal_address("batched TRSM (B array)");
    auto b_at = [&](int row, int column) {
      return b + (std::size_t(column) * std::size_t(trsm.ldb) + std::size_t(row)) * width;
    };
    if (alpha == 0.0) {  // B = 0, A not read (as in cuBLAS)
      for (int column = 0; column < trsm.n; ++column)
        for (int row = 0; row < trsm.m; ++row) store_value(b_at(row, column), 0.0);
      continue;
    }
    if (!device_range_valid(a, matrix_span_bytes(size, size, trsm.lda, trsm.type), false))
      return illegal_address("batched TRSM (A array)");
    for (int row = 0; row < size; ++row) {
      for (int column = 0; column < size; ++column) {
        double value = 0.0;
        if (row == column && trsm.unit_diagonal) {
          value = 1.0;
        } else if (op_lower ? row >= column : row <= column) {
          const int a_row = trsm.transpose ? column : row;
          const int a_column = trsm.transpose ? row : column;
          value = load_double(trsm.type, a + (std::size_t(a_column) * std::size_t(trsm.lda) + std::size_t(a_row)) * width);
        }
        op_a[std::size_t(row) * std::size_t(size) + std::size_t(column)] = value;
      }
    }
    // Left: op(A) x = alpha b for each column b of B. Right: x^T op(A) = alpha b^T for each row b,
    // that is op(A)^T x = alpha b, whose matrix is triangular the other way.
    const bool system_lower = trsm.left ? op_lower : !op_lower;
    auto coefficient = [&](int row, int column) {
      return trsm.left ? op_a[std::size_t(row) * std::size_t(size) + std::size_t(column)]
                       : op_a[std::size_t(column) * std::size_t(size) + std::size_t(row)];
    };
    const int systems = trsm.left ? trsm.n : trsm.m;
    for (int system = 0; system < systems; ++system) {
      auto element = [&](int i) { return trsm.left ? b_at(i, system) : b_at(system, i); };
      for (int i = 0; i < size; ++i) x[std::size_t(i)] = alpha * load_double(trsm.type, element(i));
      for (int step = 0; step < size; ++step) {
        const int i = system_lower ? step : size - 1 - step;
        double value = x[std::size_t(i)];
        if (system_lower) {
          for (int j = 0; j < i; ++j) value -= coefficient(i, j) * x[std::size_t(j)];
        } else {
          for (int j = i + 1; j < size; ++j) value -= coefficient(i, j) * x[std::size_t(j)];
        }
        x[std::size_t(i)] = value / coefficient(i, i);
      }
      for (int i = 0; i < size; ++i) store_value(element(i), x[std::size_t(i)]);
    }
  }
  return cuda::CUDA_SUCCESS;
}

}  // namespace gpubroker::sim
