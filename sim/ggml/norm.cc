// rms_norm_f32<block_size, do_multiply, do_add> (ggml-cuda/norm.cu): each row of x scaled by
// 1/sqrt(mean(x^2) + eps); with do_multiply the result times a broadcast row of `mul` (ggml fuses
// RMS_NORM with the MUL by the norm's weight), with do_add plus a broadcast row of `add` as well.
//
// One block per row: blockIdx.x the row (gridDim.x rows), .y the channel, .z the sample; dst is
// contiguous. Thread t of the block sums the squares of columns t, t + block_size, ... (fused
// multiply-add, in float), then block_reduce adds the threads' sums (sim/ggml/reduce.h).
#include <cmath>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "sim/ggml/kernels.h"
#include "sim/ggml/reduce.h"

namespace gpubroker::sim::ggml {
namespace {

// A broadcast operand of the fused forms: its pointer, its strides and its extents (the divisors
// of the fast-division constants; the kernel takes indices modulo them).
struct Broadcast {
  const float* data;
  std::int64_t stride_row;
  std::int64_t stride_channel;
  std::int64_t stride_sample;
  Uint3 ncols;
  Uint3 nrows;
  Uint3 nchannels;
  Uint3 nsamples;

  const float* row(std::uint32_t r, std::uint32_t c, std::uint32_t s) const {
    return data + (s % nsamples.z) * stride_sample + (c % nchannels.z) * stride_channel + (r % nrows.z) * stride_row;
  }
  bool accessible(const Launch& launch, std::string_view name, std::int64_t ncols_used) const {
    const GpubrokerSimDim3& g = launch.grid();
    return launch.accessible(name, data, sizeof(float),
                             {{std::min<std::int64_t>(ncols_used, ncols.z), 1},
                              {std::min<std::int64_t>(g.x, nrows.z), stride_row},
                              {std::min<std::int64_t>(g.y, nchannels.z), stride_channel},
                              {std::min<std::int64_t>(g.z, nsamples.z), stride_sample}},
                             Access::kRead);
  }
};

using RmsNorm = Signature<const float*, float*, int, std::int64_t, std::int64_t, std::int64_t, float, const float*,
                          std::int64_t, std::int64_t, std::int64_t, Uint3, Uint3, Uint3, Uint3, const float*,
                          std::int64_t, std::int64_t, std::int64_t, Uint3, Uint3, Uint3, Uint3>;

template <int kBlockSize, bool kMultiply, bool kAdd>
int rms_norm_f32(const Launch& launch, const RmsNorm::Values& parameters) {
  static_assert(!kAdd || kMultiply);
  const auto& [x, dst, ncols, stride_row, stride_channel, stride_sample, eps, mul, mul_s1, mul_s2, mul_s3, mul_ncols,
               mul_nrows, mul_nchannels, mul_nsamples, add, add_s1, add_s2, add_s3, add_ncols, add_nrows, add_nchannels,
               add_nsamples] = parameters;
  const Broadcast multiplier{mul, mul_s1, mul_s2, mul_s3, mul_ncols, mul_nrows, mul_nchannels, mul_nsamples};
  const Broadcast addend{add, add_s1, add_s2, add_s3, add_ncols, add_nrows, add_nchannels, add_nsamples};
  if (launch.block().x != kBlockSize || launch.block().y != 1 || launch.block().z != 1)
    return launch.unsupported("a block other than (block_size, 1, 1)");
  if (kMultiply && !divisors_valid({mul_ncols, mul_nrows, mul_nchannels, mul_nsamples}))
    return launch.unsupported("a broadcast extent of mul of 0");
  if (kAdd && !divisors_valid({add_ncols, add_nrows, add_nchannels, add_nsamples}))
    return launch.unsupported("a broadcast extent of add of 0");
  if (ncols <= 0) return 0;  // no column: nothing is written

  const GpubrokerSimDim3& grid = launch.grid();
  const std::int64_t rows = std::int64_t{grid.x} * grid.y * grid.z;
  if (!launch.accessible("x", x, sizeof(float),
                         {{ncols, 1}, {grid.x, stride_row}, {grid.y, stride_channel}, {grid.z, stride_sample}},
                         Access::kRead) ||
      !launch.accessible("dst", dst, sizeof(float), {{rows * ncols, 1}}, Access::kWrite) ||
      (kMultiply && !multiplier.accessible(launch, "mul", ncols)) || (kAdd && !addend.accessible(launch, "add", ncols)))
    return launch.illegal_address();

  std::vector<float> partial(kBlockSize);
  for (std::uint32_t sample = 0; sample < grid.z; ++sample) {
    for (std::uint32_t channel = 0; channel < grid.y; ++channel) {
      for (std::uint32_t row = 0; row < grid.x; ++row) {
        const float* in = x + sample * stride_sample + channel * stride_channel + row * stride_row;
        float* out = dst + ((std::int64_t{sample} * grid.y + channel) * grid.x + row) * ncols;
        for (int t = 0; t < kBlockSize; ++t) {
          float sum = 0.0f;
          for (int col = t; col < ncols; col += kBlockSize) sum = std::fma(in[col], in[col], sum);
          partial[t] = sum;
        }
        const float mean = block_sum(partial) / static_cast<float>(ncols);
        const float scale = 1.0f / std::sqrt(mean + eps);
        const float* mul_row = kMultiply ? multiplier.row(row, channel, sample) : nullptr;
        const float* add_row = kAdd ? addend.row(row, channel, sample) : nullptr;
        for (int col = 0; col < ncols; ++col) {
          const float scaled = scale * in[col];
          if constexpr (kAdd) {
            out[col] = std::fma(scaled, mul_row[col % mul_ncols.z], add_row[col % add_ncols.z]);
          } else if constexpr (kMultiply) {
            out[col] = scaled * mul_row[col % mul_ncols.z];
          } else {
            out[col] = scaled;
          }
        }
      }
    }
  }
  return 0;
}

}  // namespace

std::vector<KernelEntry> norm_kernels() {
  std::vector<KernelEntry> out;
  const auto add = [&]<int kBlockSize, bool kMultiply, bool kAdd>() {
    out.push_back(kernel<RmsNorm, rms_norm_f32<kBlockSize, kMultiply, kAdd>>(
        fmt::format("_Z12rms_norm_f32ILi{}ELb{}ELb{}EEvPKfPfilllfS1_lll5uint3S3_S3_S3_S1_lllS3_S3_S3_S3_", kBlockSize,
                    kMultiply ? 1 : 0, kAdd ? 1 : 0)));
  };
  add.operator()<256, false, false>();
  add.operator()<256, true, false>();
  add.operator()<256, true, true>();
  add.operator()<1024, false, false>();
  add.operator()<1024, true, false>();
  add.operator()<1024, true, true>();
  return out;
}

}  // namespace gpubroker::sim::ggml
