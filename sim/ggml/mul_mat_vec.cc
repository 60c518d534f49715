// mul_mat_vec_f<T, type_acc, ncols_dst, block_size, has_fusion, is_multi_token_id>
// (ggml-cuda/mmvf.cu): dst = x * y for a few columns of y (ncols_dst, 1 to 8: decoding and short
// prompts), x of float or half, y and dst float. With has_fusion (ncols_dst 1) ggml fuses the
// matrix product with a bias add and a gated unit: value = (x.y + x_bias) * glu(gate.y + gate_bias),
// SWIGLU or GEGLU (the FFN's up and gate projections in one kernel).
//
// One block per (row, channel, sample) of dst (blockIdx x, y, z), block_size threads. Thread t
// takes the column pairs t, t + block_size, ... of its row: with float accumulation it adds
// x*y with fused multiply-adds in float; with half accumulation (half x, type_acc half) it rounds
// y to half and adds the half products in half (one fused rounding each) for each lane of the
// pair, then adds the two lanes in float. The block's sum is reduce.h's. Channels and samples
// broadcast: x's channel is dst's channel divided by channel_ratio, its sample dst's divided by
// sample_ratio. The MUL_MAT_ID forms (ids, is_multi_token_id) are not implemented.
#include <cmath>
#include <type_traits>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "sim/ggml/activations.h"
#include "sim/ggml/kernels.h"
#include "sim/ggml/reduce.h"

namespace gpubroker::sim::ggml {
namespace {

// One template instance, as data: the body below serves them all.
struct Instance {
  bool half_weights;  // T: __half, else float
  bool half_sums;     // type_acc: __half, else float
  int ncols_dst;
  int block_size;
  bool fusion;
};

// Thread t's sum over the column pairs t, t + block_size, ...: fused multiply-adds in float.
template <class T>
float float_sum(const T* x_row, const float* y_col, int ncols2, int t, int block_size) {
  float sum = 0.0f;
  for (int col2 = t; col2 < ncols2; col2 += block_size) {
    sum = std::fma(cast<float>(x_row[2 * col2]), y_col[2 * col2], sum);
    sum = std::fma(cast<float>(x_row[2 * col2 + 1]), y_col[2 * col2 + 1], sum);
  }
  return sum;
}

// The same in half2 (y already rounded to half): each lane adds its products in half, each
// x * y + acc fused (the exact value, rounded once), then the two lanes are added in float.
float half_sum(const Half* x_row, const float* y_col, int ncols2, int t, int block_size) {
  std::uint16_t lanes[2] = {0, 0};  // +0.0 in binary16
  for (int col2 = t; col2 < ncols2; col2 += block_size)
    for (int lane = 0; lane < 2; ++lane)
      lanes[lane] = float_to_half(static_cast<float>(
          double{half_to_float(x_row[2 * col2 + lane].bits)} * y_col[2 * col2 + lane] + half_to_float(lanes[lane])));
  return half_to_float(lanes[0]) + half_to_float(lanes[1]);
}

// The dot products of one row of x (or of the gate) with the ncols_dst columns (`columns`, ncols
// apart, as row_columns gives them), as the block forms them.
template <class T>
void row_dot(const T* x_row, const std::vector<float>& columns, int ncols2, const Instance& instance,
             std::vector<float>& lanes, float* sums) {
  for (int j = 0; j < instance.ncols_dst; ++j) {
    const float* y_col = columns.data() + std::int64_t{j} * ncols2 * 2;
    for (int t = 0; t < instance.block_size; ++t) {
      if constexpr (std::is_same_v<T, Half>) {
        lanes[t] = instance.half_sums ? half_sum(x_row, y_col, ncols2, t, instance.block_size)
                                      : float_sum(x_row, y_col, ncols2, t, instance.block_size);
      } else {
        lanes[t] = float_sum(x_row, y_col, ncols2, t, instance.block_size);
      }
    }
    sums[j] = block_sum(lanes);
  }
}

// y's ncols_dst columns of one channel, contiguous: as floats, or rounded to half (make_half2)
// for half sums. Once per channel instead of once per row.
void row_columns(const float* y, std::int64_t stride_col_y, int ncols2, const Instance& instance,
                 std::vector<float>& columns) {
  const std::int64_t ncols = std::int64_t{ncols2} * 2;
  for (int j = 0; j < instance.ncols_dst; ++j)
    for (std::int64_t k = 0; k < ncols; ++k) {
      const float value = y[j * stride_col_y + k];
      columns[j * ncols + k] = instance.half_sums ? half_to_float(float_to_half(value)) : value;
    }
}

template <class T>
using MulMatVec = Signature<const T*, const float*, const std::int32_t*, FusionArgs, float*, int, Uint3, int, int, int,
                            Uint3, int, int, int, Uint3, int, int, int, int>;

template <class T>
int mul_mat_vec_f(const Launch& launch, const typename MulMatVec<T>::Values& parameters, const Instance& instance) {
  const auto& [x, y, ids, fusion, dst, ncols2, nchannels_y, stride_row, stride_col_y2, stride_col_dst, channel_ratio,
               stride_channel_x, stride_channel_y, stride_channel_dst, sample_ratio, stride_sample_x, stride_sample_y,
               stride_sample_dst, ids_stride] = parameters;
  const GpubrokerSimDim3& grid = launch.grid();
  if (ids != nullptr) return launch.unsupported("ids (the MUL_MAT_ID form)");
  if (launch.block().x != static_cast<unsigned>(instance.block_size) || launch.block().y != 1 || launch.block().z != 1)
    return launch.unsupported("a block other than (block_size, 1, 1)");
  if (!divisors_valid({channel_ratio, sample_ratio})) return launch.unsupported("a channel or sample ratio of 0");
  const bool use_gate = instance.fusion && fusion.gate != nullptr;
  const bool use_bias = instance.fusion && fusion.x_bias != nullptr;
  const bool use_gate_bias = use_gate && fusion.gate_bias != nullptr;
  if (use_gate && fusion.glu_op != kSwiglu && fusion.glu_op != kGeglu && fusion.glu_op != kSwigluOai)
    return launch.unsupported(
        fmt::format("a fused gated unit {} (only SWIGLU, GEGLU, SWIGLU_OAI)", static_cast<int>(fusion.glu_op)));

  const std::int64_t ncols = std::int64_t{ncols2} * 2;
  const std::int64_t channels_x = (grid.y - 1) / channel_ratio.z + 1;
  const std::int64_t samples_x = (grid.z - 1) / sample_ratio.z + 1;
  const auto x_shape = [&](const char* name, const void* base) {
    return launch.accessible(
        name, base, sizeof(T),
        {{ncols, 1}, {grid.x, stride_row}, {channels_x, stride_channel_x}, {samples_x, stride_sample_x}},
        Access::kRead);
  };
  const auto dst_shape = [&](const char* name, const void* base, Access access) {
    return launch.accessible(
        name, base, sizeof(float),
        {{grid.x, 1}, {instance.ncols_dst, stride_col_dst}, {grid.y, stride_channel_dst}, {grid.z, stride_sample_dst}},
        access);
  };
  if (!x_shape("x", x) || (use_gate && !x_shape("fusion.gate", fusion.gate)) ||
      !launch.accessible("y", y, sizeof(float),
                         {{ncols, 1},
                          {instance.ncols_dst, std::int64_t{stride_col_y2} * 2},
                          {grid.y, stride_channel_y},
                          {grid.z, stride_sample_y}},
                         Access::kRead) ||
      !dst_shape("dst", dst, Access::kWrite) ||
      (use_bias && !dst_shape("fusion.x_bias", fusion.x_bias, Access::kRead)) ||
      (use_gate_bias && !dst_shape("fusion.gate_bias", fusion.gate_bias, Access::kRead)))
    return launch.illegal_address();

  std::vector<float> columns(std::int64_t{instance.ncols_dst} * ncols);
  std::vector<float> lanes(instance.block_size);
  std::vector<float> sums(instance.ncols_dst);
  std::vector<float> gate_sums(instance.ncols_dst);
  for (std::uint32_t sample = 0; sample < grid.z; ++sample) {
    for (std::uint32_t channel = 0; channel < grid.y; ++channel) {
      const std::int64_t x_offset = std::int64_t{sample / sample_ratio.z} * stride_sample_x +
                                    std::int64_t{channel / channel_ratio.z} * stride_channel_x;
      const float* y_base = y + std::int64_t{sample} * stride_sample_y + std::int64_t{channel} * stride_channel_y;
      const std::int64_t dst_offset =
          std::int64_t{sample} * stride_sample_dst + std::int64_t{channel} * stride_channel_dst;
      row_columns(y_base, std::int64_t{stride_col_y2} * 2, ncols2, instance, columns);
      for (std::uint32_t row = 0; row < grid.x; ++row) {
        const std::int64_t x_row = x_offset + std::int64_t{row} * stride_row;
        row_dot(x + x_row, columns, ncols2, instance, lanes, sums.data());
        if (use_gate)
          row_dot(static_cast<const T*>(fusion.gate) + x_row, columns, ncols2, instance, lanes, gate_sums.data());
        for (int j = 0; j < instance.ncols_dst; ++j) {
          const std::int64_t at = dst_offset + std::int64_t{j} * stride_col_dst + row;
          float value = sums[j];
          if (use_bias) value += static_cast<const float*>(fusion.x_bias)[at];
          if (use_gate) {
            float gate = gate_sums[j];
            if (use_gate_bias) gate += static_cast<const float*>(fusion.gate_bias)[at];
            if (fusion.glu_op == kSwiglu)
              value *= silu(gate);
            else if (fusion.glu_op == kGeglu)
              value *= gelu(gate);
            else
              value = swiglu_oai(gate, value);
          }
          dst[at] = value;
        }
      }
    }
  }
  return 0;
}

template <Instance I>
using InstanceSignature = MulMatVec<std::conditional_t<I.half_weights, Half, float>>;

template <Instance I>
int instance(const Launch& launch, const typename InstanceSignature<I>::Values& parameters) {
  return mul_mat_vec_f<std::conditional_t<I.half_weights, Half, float>>(launch, parameters, I);
}

template <Instance I>
void add(std::vector<KernelEntry>& out, std::string name) {
  out.push_back(kernel<InstanceSignature<I>, instance<I>>(std::move(name)));
}

// The instances for one (T, type_acc): ncols_dst 1 to 8 at block sizes 32 to 256 without fusion,
// and ncols_dst 1 with it, as mmvf.cu instantiates them (is_multi_token_id false).
template <bool kHalfWeights, bool kHalfSums, int kBlockSize>
void add_block_size(std::vector<KernelEntry>& out, const char* types, const char* tail) {
  [&]<int... kMinusOne>(std::integer_sequence<int, kMinusOne...>) {
    (add<Instance{kHalfWeights, kHalfSums, kMinusOne + 1, kBlockSize, false}>(
         out, fmt::format("_Z13mul_mat_vec_fI{}Li{}ELi{}ELb0ELb0E{}", types, kMinusOne + 1, kBlockSize, tail)),
     ...);
  }
  (std::make_integer_sequence<int, 8>{});
  add<Instance{kHalfWeights, kHalfSums, 1, kBlockSize, true}>(
      out, fmt::format("_Z13mul_mat_vec_fI{}Li1ELi{}ELb1ELb0E{}", types, kBlockSize, tail));
}

template <bool kHalfWeights, bool kHalfSums>
void add_types(std::vector<KernelEntry>& out, const char* types, const char* tail) {
  [&]<int... kWarps>(std::integer_sequence<int, kWarps...>) {
    (add_block_size<kHalfWeights, kHalfSums, (kWarps + 1) * 32>(out, types, tail), ...);
  }
  (std::make_integer_sequence<int, 8>{});
}

}  // namespace

std::vector<KernelEntry> mul_mat_vec_kernels() {
  // The parameter list's mangling; float's substitution numbers differ (no __half to refer to).
  constexpr const char* kHalfTail = "EvPKT_PKfPKi31ggml_cuda_mm_fusion_args_devicePfi5uint3iiiSA_iiiSA_iiii";
  constexpr const char* kFloatTail = "EvPKT_PKfPKi31ggml_cuda_mm_fusion_args_devicePfi5uint3iiiS9_iiiS9_iiii";
  std::vector<KernelEntry> out;
  add_types<true, true>(out, "6__halfS0_", kHalfTail);
  add_types<true, false>(out, "6__halff", kHalfTail);
  add_types<false, false>(out, "ff", kFloatTail);
  return out;
}

}  // namespace gpubroker::sim::ggml
