// k_compute_batched_ptrs (ggml-cuda/ggml-cuda.cu): the pointer arrays of the cublasGemmBatchedEx
// that computes a batched matrix product (attention's KQ and KQV without flash attention). For
// each matrix (i12 of ne12, i13 of ne13) it writes the addresses of its src0 matrix (broadcast:
// i12 / r2, i13 / r3), its src1 matrix and its dst matrix; the GEMM reads them when it runs.
//
// Thread (x, y) of the grid is the matrix i13 = x, i12 = y; threads past ne13 or ne12 do nothing.
#include <cstdint>

#include "sim/ggml/kernels.h"

namespace gpubroker::sim::ggml {
namespace {

using BatchedPointers = Signature<const void*, const void*, char*, const void**, void**, std::int64_t, std::int64_t,
                                  std::int64_t, std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t,
                                  std::uint64_t, std::uint64_t, std::int64_t, std::int64_t>;

int compute_batched_ptrs(const Launch& launch, const BatchedPointers::Values& parameters) {
  const auto& [src0, src1, dst, ptrs_src, ptrs_dst, ne12, ne13, ne23, nb02, nb03, nb12, nb13, nbd2, nbd3, r2, r3] =
      parameters;
  if (r2 <= 0 || r3 <= 0) return launch.unsupported("a broadcast ratio r2 or r3 below 1");
  const std::int64_t n13 = std::min<std::int64_t>(ne13, std::int64_t{launch.grid().x} * launch.block().x);
  const std::int64_t n12 = std::min<std::int64_t>(ne12, std::int64_t{launch.grid().y} * launch.block().y);
  if (!launch.accessible("ptrs_src", ptrs_src, sizeof(void*), {{2, ne23}, {n12, 1}, {n13, ne12}}, Access::kWrite) ||
      !launch.accessible("ptrs_dst", ptrs_dst, sizeof(void*), {{n12, 1}, {n13, ne12}}, Access::kWrite))
    return launch.illegal_address();
  // Addresses are only computed here, never touched: unsigned arithmetic, wrapping as the device's.
  const auto address = [](const void* base, std::uint64_t offset) {
    return reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(base) + offset);
  };
  for (std::int64_t i13 = 0; i13 < n13; ++i13) {
    for (std::int64_t i12 = 0; i12 < n12; ++i12) {
      const auto i03 = static_cast<std::uint64_t>(i13 / r3);
      const auto i02 = static_cast<std::uint64_t>(i12 / r2);
      const auto u12 = static_cast<std::uint64_t>(i12);
      const auto u13 = static_cast<std::uint64_t>(i13);
      const std::int64_t slot = i12 + i13 * ne12;
      ptrs_src[slot] = address(src0, i02 * nb02 + i03 * nb03);
      ptrs_src[ne23 + slot] = address(src1, u12 * nb12 + u13 * nb13);
      ptrs_dst[slot] = address(dst, u12 * nbd2 + u13 * nbd3);
    }
  }
  return 0;
}

}  // namespace

std::vector<KernelEntry> matmul_kernels() {
  return {
      kernel<BatchedPointers, compute_batched_ptrs>("_Z22k_compute_batched_ptrsPKvS0_PcPS0_PPvlllmmmmmmll"),
  };
}

}  // namespace gpubroker::sim::ggml
