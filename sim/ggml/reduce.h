// The sums ggml's kernels form across the threads of a block, in the order the device forms them,
// so that a host implementation rounds as the GPU does.
//
// warp_reduce_sum: each lane adds the lane `offset` away (__shfl_xor_sync), offset 16, 8, 4, 2, 1;
// every lane ends with the same value, a pairwise tree: lane i + lane i+16 first, and so on.
// block_reduce<SUM> (and mul_mat_vec_f's own): each warp's sum, then the first warp sums the
// warps' sums (lane w holds warp w's, the lanes past the last warp hold 0) the same way.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>

#include "sim/ggml/launch.h"

namespace gpubroker::sim::ggml {

// The butterfly sum of up to 32 lane values (missing lanes count 0).
inline float warp_sum(std::span<const float> lanes) {
  std::array<float, kWarpSize> v{};
  std::copy_n(lanes.begin(), std::min(lanes.size(), std::size_t{kWarpSize}), v.begin());
  for (std::size_t offset = kWarpSize / 2; offset > 0; offset /= 2)
    for (std::size_t lane = 0; lane < offset; ++lane) v[lane] += v[lane + offset];
  return v[0];
}

// The block's sum of one value per thread (`threads`: the block's x extent, reducible_block).
inline float block_sum(std::span<const float> threads) {
  if (threads.size() <= kWarpSize) return warp_sum(threads);
  std::array<float, kWarpSize> warps{};
  for (std::size_t w = 0; w * kWarpSize < threads.size() && w < kWarpSize; ++w)
    warps[w] =
        warp_sum(threads.subspan(w * kWarpSize, std::min<std::size_t>(kWarpSize, threads.size() - w * kWarpSize)));
  return warp_sum(warps);
}

// Whether block_sum models a block of `x` threads as ggml's reductions assume it.
// (whole warps: a shuffle across a partial warp is undefined on the device).
inline bool reducible_block(unsigned x) { return x >= kWarpSize && x <= 1024 && x % kWarpSize == 0; }

}  // namespace gpubroker::sim::ggml
