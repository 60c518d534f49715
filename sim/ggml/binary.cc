// k_bin_bcast<op, src0_t, src1_t, dst_t, src1_ptrs...> (ggml-cuda/binbcast.cu): dst = src0 op src1
// with src1 broadcast (its indices taken modulo its extents ne10..ne13), for ADD, SUB, MUL and DIV.
// The wheel's instances always pass src1 again as the first of src1_ptrs; with more than one, ggml
// has fused a chain of the same op (src0 op a op b ...), applied in order in float. src0 may be
// null (then 0). Strides are in elements; s0 is 1.
//
// Threads: x walks the columns (and loops by the grid's width), y the rows, z the pairs (i2, i3),
// i3 fastest modulo ne3; threads past an extent do nothing.
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "sim/ggml/kernels.h"

namespace gpubroker::sim::ggml {
namespace {

enum class BinaryOp { kAdd, kSub, kMul, kDiv };

template <BinaryOp kOp>
float apply(float a, float b) {
  if constexpr (kOp == BinaryOp::kAdd) return a + b;
  if constexpr (kOp == BinaryOp::kSub) return a - b;
  if constexpr (kOp == BinaryOp::kMul) return a * b;
  if constexpr (kOp == BinaryOp::kDiv) return a / b;
}

// The fixed parameters, then kOperands pointers of src1's type.
template <std::size_t... I>
Signature<const float*, const float*, float*, int, int, int, Uint3, Uint3, Uint3, Uint3, Uint3, int, int, int, int, int,
          int, int, int, int, int, int, decltype((void)I, static_cast<const float*>(nullptr))...>
    bin_bcast_signature(std::index_sequence<I...>);
template <std::size_t kOperands>
using BinBcast = decltype(bin_bcast_signature(std::make_index_sequence<kOperands>{}));

template <BinaryOp kOp, std::size_t kOperands>
int bin_bcast(const Launch& launch, const typename BinBcast<kOperands>::Values& parameters) {
  const auto& [src0, src1_unused, dst, ne0, ne1, ne2, ne3, ne10, ne11, ne12, ne13, s1, s2, s3, s00, s01, s02, s03, s10,
               s11, s12, s13] = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple{std::get<I>(parameters)...};
  }
  (std::make_index_sequence<22>{});
  const std::array<const float*, kOperands> operands = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<const float*, kOperands>{std::get<22 + I>(parameters)...};
  }
  (std::make_index_sequence<kOperands>{});
  if (!divisors_valid({ne3, ne10, ne11, ne12, ne13})) return launch.unsupported("an extent of 0");

  const GpubrokerSimDim3& grid = launch.grid();
  const GpubrokerSimDim3& block = launch.block();
  if (ne0 <= 0) return 0;
  const std::int64_t n1 = std::min<std::int64_t>(ne1, std::int64_t{grid.y} * block.y);
  const std::int64_t n23 = std::min<std::int64_t>(std::int64_t{ne2} * ne3.z, std::int64_t{grid.z} * block.z);
  if (n1 <= 0 || n23 <= 0) return 0;
  const std::int64_t n3 = std::min<std::int64_t>(n23, ne3.z);
  const std::int64_t n2 = (n23 - 1) / ne3.z + 1;
  if (!launch.accessible("dst", dst, sizeof(float), {{ne0, 1}, {n1, s1}, {n2, s2}, {n3, s3}}, Access::kWrite) ||
      (src0 != nullptr &&
       !launch.accessible("src0", src0, sizeof(float), {{ne0, s00}, {n1, s01}, {n2, s02}, {n3, s03}}, Access::kRead)))
    return launch.illegal_address();
  for (const float* operand : operands) {
    if (!launch.accessible("src1", operand, sizeof(float),
                           {{std::min<std::int64_t>(ne0, ne10.z), s10},
                            {std::min<std::int64_t>(n1, ne11.z), s11},
                            {std::min<std::int64_t>(n2, ne12.z), s12},
                            {std::min<std::int64_t>(n3, ne13.z), s13}},
                           Access::kRead))
      return launch.illegal_address();
  }

  for (std::int64_t i23 = 0; i23 < n23; ++i23) {
    const std::int64_t i2 = i23 / ne3.z;
    const std::int64_t i3 = i23 % ne3.z;
    for (std::int64_t i1 = 0; i1 < n1; ++i1) {
      const std::int64_t src1_row = (i3 % ne13.z) * s13 + (i2 % ne12.z) * s12 + (i1 % ne11.z) * s11;
      const float* in = src0 == nullptr ? nullptr : src0 + i3 * s03 + i2 * s02 + i1 * s01;
      float* out = dst + i3 * s3 + i2 * s2 + i1 * s1;
      for (std::int64_t i0 = 0; i0 < ne0; ++i0) {
        float result = in != nullptr ? in[i0 * s00] : 0.0f;
        for (const float* operand : operands) result = apply<kOp>(result, operand[src1_row + (i0 % ne10.z) * s10]);
        out[i0] = result;
      }
    }
  }
  return 0;
}

template <BinaryOp kOp, std::size_t... kCounts>
void add_op(std::vector<KernelEntry>& out, const char* name) {
  // The ops are file-local in binbcast.cu: their names carry the hash nvcc gave that file.
  constexpr const char* kPrefix = "_Z11k_bin_bcastIXadL_ZN42_INTERNAL_ff066ff1_11_binbcast_cu_6840010b";
  constexpr const char* kTail = "EEvPKT0_PKT1_PT2_iii5uint3SB_SB_SB_SB_iiiiiiiiiiiDpT3_";
  const auto pointers = [](std::size_t count) {
    std::string text = "PKf";
    for (std::size_t i = 1; i < count; ++i) text += "S2_";
    return text;
  };
  (out.push_back(kernel<BinBcast<kCounts>, bin_bcast<kOp, kCounts>>(
       fmt::format("{}{}EffEEfffJ{}{}", kPrefix, name, pointers(kCounts), kTail))),
   ...);
}

}  // namespace

std::vector<KernelEntry> binary_kernels() {
  std::vector<KernelEntry> out;
  add_op<BinaryOp::kAdd, 1, 2, 3, 4, 5, 6, 7, 8>(out, "6op_add");
  add_op<BinaryOp::kMul, 1, 2, 3, 4, 5, 6, 7, 8>(out, "6op_mul");
  add_op<BinaryOp::kSub, 1>(out, "6op_sub");
  add_op<BinaryOp::kDiv, 1>(out, "6op_div");
  return out;
}

}  // namespace gpubroker::sim::ggml
