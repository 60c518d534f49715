// rope_norm<forward, has_ff, T, D> (ggml-cuda/rope.cu): rotary position embedding, "normal" mode
// (llama's): each adjacent pair (x[i0], x[i0 + 1]) of the first n_dims columns of a row turns by
// theta = pos * theta_scale^(i0/2) (divided by freq_factors[i0/2] with has_ff), YaRN-corrected,
// backwards when !forward; the columns past n_dims are copied. D may be half: ggml then fuses
// ROPE + VIEW + SET_ROWS, writing the rotated rows straight into the KV cache at the rows
// row_indices names (set_rows_stride elements apart).
//
// Thread (x, y) of the grid: x the row (i1 of ne01, i2 of ne02, i3: heads, tokens, sequences),
// y the pair. Rows are not bounds-checked on the device: the grid is exactly the rows.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "sim/ggml/kernels.h"

namespace gpubroker::sim::ggml {
namespace {

float yarn_ramp(float low, float high, std::int64_t i0) {
  const float y = (static_cast<float>(i0 / 2) - low) / std::fmax(0.001f, high - low);
  return 1.0f - std::fmin(1.0f, std::fmax(0.0f, y));
}

template <class T, class D>
using RopeNorm = Signature<const T*, D*, int, int, int, int, int, int, int, int, int, int, const std::int32_t*, float,
                           float, float, RopeCorrDims, float, const float*, const std::int64_t*, int>;

template <bool kForward, bool kFreqFactors, class T, class D>
int rope_norm(const Launch& launch, const typename RopeNorm<T, D>::Values& parameters) {
  const auto& [x, dst, ne00, ne01, ne02, s01, s02, s03, s1, s2, s3, n_dims, pos, freq_scale, ext_factor, attn_factor,
               corr_dims, theta_scale, freq_factors, row_indices, set_rows_stride] = parameters;
  if (ne01 <= 0 || ne02 <= 0) return launch.unsupported("ne01 or ne02 below 1 (the kernel divides by them)");
  if (ne00 % 2 != 0) return launch.unsupported("an odd row length ne00");

  const std::int64_t rows = std::int64_t{launch.grid().x} * launch.block().x;
  const std::int64_t columns = std::min<std::int64_t>(ne00, 2 * std::int64_t{launch.grid().y} * launch.block().y);
  if (columns <= 0) return 0;
  const std::int64_t plane = std::int64_t{ne01} * ne02;
  // The (i1, i2, i3) the rows reach: whole planes, or the part of the first one.
  const std::int64_t n3 = (rows - 1) / plane + 1;
  const std::int64_t n2 = rows >= plane ? ne02 : (rows - 1) / ne01 + 1;
  const std::int64_t n1 = rows >= ne01 ? ne01 : rows;
  const std::int64_t rotated = std::min<std::int64_t>(columns, n_dims);
  if (!launch.accessible("x", x, sizeof(T), {{columns, 1}, {n1, s01}, {n2, s02}, {n3, s03}}, Access::kRead) ||
      !launch.accessible("pos", pos, sizeof(std::int32_t), {{n2, 1}}, Access::kRead) ||
      (kFreqFactors &&
       !launch.accessible("freq_factors", freq_factors, sizeof(float), {{(rotated + 1) / 2, 1}}, Access::kRead)))
    return launch.illegal_address();
  std::vector<std::int64_t> row_base(n2);  // where dst's rows of token i2 start
  if (set_rows_stride != 0) {
    if (!launch.accessible("row_indices", row_indices, sizeof(std::int64_t), {{n2, 1}}, Access::kRead))
      return launch.illegal_address();
    for (std::int64_t i2 = 0; i2 < n2; ++i2) {
      row_base[i2] = row_indices[i2] * set_rows_stride;  // i3 does not move the fused store
      if (!launch.accessible("dst", dst + row_base[i2], sizeof(D), {{columns, 1}, {n1, s1}}, Access::kWrite))
        return launch.illegal_address();
    }
  } else {
    if (!launch.accessible("dst", dst, sizeof(D), {{columns, 1}, {n1, s1}, {n2, s2}, {n3, s3}}, Access::kWrite))
      return launch.illegal_address();
  }

  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t i3 = row / plane;
    const std::int64_t i2 = (row - i3 * plane) / ne01;
    const std::int64_t i1 = row - i3 * plane - i2 * ne01;
    const T* in = x + i1 * s01 + i2 * s02 + i3 * s03;
    D* out = dst + (set_rows_stride != 0 ? row_base[i2] + i1 * s1 : i1 * s1 + i2 * s2 + i3 * s3);
    for (std::int64_t i0 = 0; i0 < columns; i0 += 2) {
      const float x0 = cast<float>(in[i0]);
      const float x1 = cast<float>(in[i0 + 1]);
      if (i0 >= n_dims) {
        out[i0] = cast<D>(x0);
        out[i0 + 1] = cast<D>(x1);
        continue;
      }
      const float theta_base = static_cast<float>(pos[i2]) * std::pow(theta_scale, static_cast<float>(i0) / 2.0f);
      const float theta_extrap = theta_base / (kFreqFactors ? freq_factors[i0 / 2] : 1.0f);
      // rope_yarn: interpolate, mixed back towards extrapolation by the ramp, with its magnitude.
      const float theta_interp = freq_scale * theta_extrap;
      float theta = theta_interp;
      float mscale = attn_factor;
      if (ext_factor != 0.0f) {
        const float ramp_mix = yarn_ramp(corr_dims.v[0], corr_dims.v[1], i0) * ext_factor;
        theta = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
        mscale *= 1.0f + 0.1f * std::log(1.0f / freq_scale);
      }
      const float cos_theta = std::cos(theta) * mscale;
      const float sin_theta = (kForward ? 1.0f : -1.0f) * std::sin(theta) * mscale;
      out[i0] = cast<D>(x0 * cos_theta - x1 * sin_theta);
      out[i0 + 1] = cast<D>(x0 * sin_theta + x1 * cos_theta);
    }
  }
  return 0;
}

}  // namespace

std::vector<KernelEntry> rope_kernels() {
  constexpr const char* kTail = "EvPKT1_PT2_iiiiiiiiiiPKifff14rope_corr_dimsfPKfPKli";
  std::vector<KernelEntry> out;
  const auto add = [&]<bool kForward, bool kFreqFactors>() {
    const std::string flags = fmt::format("ILb{}ELb{}E", kForward ? 1 : 0, kFreqFactors ? 1 : 0);
    out.push_back(kernel<RopeNorm<float, float>, rope_norm<kForward, kFreqFactors, float, float>>(
        "_Z9rope_norm" + flags + "ff" + kTail));
    out.push_back(kernel<RopeNorm<float, Half>, rope_norm<kForward, kFreqFactors, float, Half>>("_Z9rope_norm" + flags +
                                                                                                "f6__half" + kTail));
    out.push_back(kernel<RopeNorm<Half, Half>, rope_norm<kForward, kFreqFactors, Half, Half>>("_Z9rope_norm" + flags +
                                                                                              "6__halfS0_" + kTail));
  };
  add.operator()<true, false>();
  add.operator()<true, true>();
  add.operator()<false, false>();
  add.operator()<false, true>();
  return out;
}

}  // namespace gpubroker::sim::ggml
