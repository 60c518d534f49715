// soft_max_f32<use_shared, ncols_template, block_size_template, T> (ggml-cuda/softmax.cu): the
// attention softmax of each row of x, scaled, with a broadcast mask (of type T) times the ALiBi
// slope of the head added first, and an optional per-head sink logit in the denominator.
//
// One block per row (blockIdx x the row i01, y the head i02, z the sequence i03); x and dst are
// contiguous rows of ncols (the template's, when it is not 0). Thread t takes columns t,
// t + block_size, ...: the block's maximum, then each thread's sum of exp(v - max) in its order,
// added across the block as reduce.h does. use_shared only says where the device caches the
// values between the passes.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "sim/ggml/kernels.h"
#include "sim/ggml/reduce.h"

namespace gpubroker::sim::ggml {
namespace {

float alibi_slope(const SoftMaxParams& p, std::uint32_t head) {
  if (p.max_bias <= 0.0f) return 1.0f;
  const float base = head < p.n_head_log2 ? p.m0 : p.m1;
  const int exponent =
      head < p.n_head_log2 ? static_cast<int>(head) + 1 : 2 * static_cast<int>(head - p.n_head_log2) + 1;
  return std::pow(base, static_cast<float>(exponent));
}

template <class T>
using SoftMax = Signature<const float*, const T*, const float*, float*, SoftMaxParams>;

template <int kColumns, int kBlockSize, class T>
int soft_max_f32(const Launch& launch, const typename SoftMax<T>::Values& parameters) {
  const auto& [x, mask, sinks, dst, p] = parameters;
  const std::int64_t ncols = kColumns == 0 ? p.ncols : kColumns;
  const unsigned block_size = kBlockSize == 0 ? launch.block().x : kBlockSize;
  if (launch.block().x != block_size || launch.block().y != 1 || launch.block().z != 1 || !reducible_block(block_size))
    return launch.unsupported(
        fmt::format("a block of ({}, {}, {})", launch.block().x, launch.block().y, launch.block().z));
  if (kColumns != 0 && kColumns > kBlockSize && kColumns % kBlockSize != 0)
    return launch.unsupported("columns that are not whole blocks");
  if (mask != nullptr && (p.ne12 <= 0 || p.ne13 <= 0)) return launch.unsupported("a mask broadcast extent below 1");
  constexpr std::int64_t kElement = sizeof(T);
  if (mask != nullptr && (p.nb11 % kElement != 0 || p.nb12 % kElement != 0 || p.nb13 % kElement != 0))
    return launch.unsupported("mask strides that are not whole elements");
  if (ncols <= 0) return 0;

  const GpubrokerSimDim3& grid = launch.grid();
  const std::int64_t rows = std::int64_t{grid.x} * grid.y * grid.z;
  if (!launch.accessible("x", x, sizeof(float), {{ncols * rows, 1}}, Access::kRead) ||
      !launch.accessible("dst", dst, sizeof(float), {{ncols * rows, 1}}, Access::kWrite) ||
      (sinks != nullptr && !launch.accessible("sinks", sinks, sizeof(float), {{grid.y, 1}}, Access::kRead)) ||
      (mask != nullptr && !launch.accessible("mask", mask, sizeof(T),
                                             {{ncols, 1},
                                              {grid.x, p.nb11 / kElement},
                                              {std::min<std::int64_t>(grid.y, p.ne12), p.nb12 / kElement},
                                              {std::min<std::int64_t>(grid.z, p.ne13), p.nb13 / kElement}},
                                             Access::kRead)))
    return launch.illegal_address();

  std::vector<float> values(ncols);
  std::vector<float> partial(block_size);
  for (std::uint32_t i03 = 0; i03 < grid.z; ++i03) {
    for (std::uint32_t i02 = 0; i02 < grid.y; ++i02) {
      const float slope = alibi_slope(p, i02);
      for (std::uint32_t i01 = 0; i01 < grid.x; ++i01) {
        const std::int64_t row = i01 + std::int64_t{i02} * grid.x + std::int64_t{i03} * grid.x * grid.y;
        const float* in = x + row * ncols;
        float* out = dst + row * ncols;
        const T* mask_row = mask == nullptr
                                ? nullptr
                                : mask + (i01 * p.nb11 + (i02 % p.ne12) * p.nb12 + (i03 % p.ne13) * p.nb13) / kElement;
        float max_value = sinks != nullptr ? sinks[i02] : -std::numeric_limits<float>::infinity();
        for (std::int64_t col = 0; col < ncols; ++col) {
          values[col] =
              mask_row != nullptr ? std::fma(in[col], p.scale, slope * cast<float>(mask_row[col])) : in[col] * p.scale;
          max_value = std::fmax(max_value, values[col]);
        }
        for (unsigned t = 0; t < block_size; ++t) {
          float sum = 0.0f;
          for (std::int64_t col = t; col < ncols; col += block_size) {
            values[col] = std::exp(values[col] - max_value);
            sum += values[col];
          }
          partial[t] = sum;
        }
        float total = block_sum(partial);
        if (sinks != nullptr) total += std::exp(sinks[i02] - max_value);
        const float inverse = 1.0f / total;
        for (std::int64_t col = 0; col < ncols; ++col) out[col] = values[col] * inverse;
      }
    }
  }
  return 0;
}

}  // namespace

std::vector<KernelEntry> softmax_kernels() {
  constexpr const char* kFloatTail = "EvPKfPKT2_S1_Pf15soft_max_params";
  constexpr const char* kHalfTail = "EvPKfPKT2_S2_Pf15soft_max_params";
  std::vector<KernelEntry> out;
  const auto add = [&]<int kColumns, int kBlockSize>(bool shared) {
    const std::string flags = fmt::format("_Z12soft_max_f32ILb{}ELi{}ELi{}E", shared ? 1 : 0, kColumns, kBlockSize);
    out.push_back(kernel<SoftMax<float>, soft_max_f32<kColumns, kBlockSize, float>>(flags + "f" + kFloatTail));
    out.push_back(kernel<SoftMax<Half>, soft_max_f32<kColumns, kBlockSize, Half>>(flags + "6__half" + kHalfTail));
  };
  add.operator()<0, 0>(false);
  add.operator()<0, 0>(true);
  add.operator()<32, 32>(true);
  add.operator()<64, 64>(true);
  add.operator()<128, 128>(true);
  add.operator()<256, 256>(true);
  add.operator()<512, 512>(true);
  add.operator()<1024, 1024>(true);
  add.operator()<2048, 1024>(true);
  add.operator()<4096, 1024>(true);
  return out;
}

}  // namespace gpubroker::sim::ggml
