// The values ggml's kernels take by value, laid out as nvcc lays them out on the device (x86-64's
// layout of the same members): CUDA's vector and half types and ggml's parameter structs. Each is
// a kernel parameter's type in a Signature (launch.h), so a size that differed would refuse every
// launch of its kernels; the static_asserts pin them.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace gpubroker::sim::ggml {

// CUDA's uint3: ggml passes its fast-division constants <multiplier, shift, divisor> in one; the
// host implementations divide by the divisor (z) itself.
struct Uint3 {
  std::uint32_t x;
  std::uint32_t y;
  std::uint32_t z;
};
static_assert(sizeof(Uint3) == 12 && alignof(Uint3) == 4);

// Whether every fast-division constant has a divisor the kernel can divide by.
inline bool divisors_valid(std::initializer_list<Uint3> values) {
  for (const Uint3& value : values)
    if (value.z == 0) return false;
  return true;
}

// CUDA's __half, by its bits.
struct Half {
  std::uint16_t bits;
};
static_assert(sizeof(Half) == 2);

// ggml_glu_op (ggml.h)
enum GluOp : std::int32_t { kReglu, kGeglu, kSwiglu, kSwigluOai, kGegluErf, kGegluQuick };

// ggml_cuda_mm_fusion_args_device (ggml-cuda/common.cuh): what mul_mat_vec_f fuses in.
struct FusionArgs {
  const void* x_bias;
  const void* gate;
  const void* gate_bias;
  GluOp glu_op;
};
static_assert(sizeof(FusionArgs) == 32);

// soft_max_params (ggml-cuda/softmax.cu)
struct SoftMaxParams {
  std::int64_t nheads;
  std::uint32_t n_head_log2;
  std::int64_t ncols;
  std::int64_t nrows_x;
  std::int64_t nrows_y;
  std::int64_t ne00;
  std::int64_t ne01;
  std::int64_t ne02;
  std::int64_t ne03;
  std::int64_t nb11;
  std::int64_t nb12;
  std::int64_t nb13;
  std::int64_t ne12;
  std::int64_t ne13;
  float scale;
  float max_bias;
  float m0;
  float m1;
};
static_assert(sizeof(SoftMaxParams) == 128);

// rope_corr_dims (ggml-cuda/rope.cu): YaRN's correction range.
struct RopeCorrDims {
  float v[2];
};
static_assert(sizeof(RopeCorrDims) == 8);

}  // namespace gpubroker::sim::ggml
