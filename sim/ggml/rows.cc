// Row gathers and scatters by index (ggml-cuda/getrows.cu, set-rows.cu):
//
// k_get_rows_float<src0_t, dst_t>: dst row (i10, i11, i12) = src0 row src1[i10, i11, i12] of
// matrix (i11, i12), converted (GET_ROWS: the token embeddings, the output rows of a batch).
// Block x is i10; block y with thread x walks the columns; block z walks (i11, i12), ne12 fastest.
//
// k_set_rows<src_t, idx_t, dst_t>: src0 row (i01, i02, i03) goes to dst row src1[i01, i02 % ne11,
// i03 % ne12] of matrix (i02, i03), converted (SET_ROWS: the KV cache store). One thread per
// element of src0, i00 fastest.
//
// The rows are data: the range they reach is checked after the indices are read.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "sim/ggml/kernels.h"

namespace gpubroker::sim::ggml {
namespace {

// The lowest and highest of some indices (none: an empty range).
struct IndexRange {
  std::int64_t low = std::numeric_limits<std::int64_t>::max();
  std::int64_t high = std::numeric_limits<std::int64_t>::min();
  void add(std::int64_t value) {
    low = std::min(low, value);
    high = std::max(high, value);
  }
  [[nodiscard]] std::int64_t count() const { return low > high ? 0 : high - low + 1; }
};

template <class S, class D>
using GetRows =
    Signature<const S*, const std::int32_t*, D*, std::int64_t, std::int64_t, Uint3, std::uint64_t, std::uint64_t,
              std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t>;

template <class S, class D>
int get_rows_float(const Launch& launch, const typename GetRows<S, D>::Values& parameters) {
  const auto& [src0, src1, dst, ne00, ne11, ne12, s1, s2, s3, nb01, nb02, nb03, s10, s11, s12] = parameters;
  if (!divisors_valid({ne12})) return launch.unsupported("ne12 of 0");
  const std::int64_t n10 = launch.grid().x;
  const auto signed_stride = [](std::uint64_t stride) { return static_cast<std::int64_t>(stride); };
  if (ne00 <= 0 || ne11 <= 0) return 0;
  if (!launch.accessible("src1", src1, sizeof(std::int32_t),
                         {{n10, signed_stride(s10)}, {ne11, signed_stride(s11)}, {ne12.z, signed_stride(s12)}},
                         Access::kRead) ||
      !launch.accessible("dst", dst, sizeof(D),
                         {{ne00, 1}, {n10, signed_stride(s1)}, {ne11, signed_stride(s2)}, {ne12.z, signed_stride(s3)}},
                         Access::kWrite))
    return launch.illegal_address();
  const auto index_at = [&](std::int64_t i10, std::int64_t i11, std::int64_t i12) {
    return src1[i10 * signed_stride(s10) + i11 * signed_stride(s11) + i12 * signed_stride(s12)];
  };
  IndexRange rows;
  for (std::int64_t i12 = 0; i12 < ne12.z; ++i12)
    for (std::int64_t i11 = 0; i11 < ne11; ++i11)
      for (std::int64_t i10 = 0; i10 < n10; ++i10) rows.add(index_at(i10, i11, i12));
  const auto* base = reinterpret_cast<const unsigned char*>(src0) + rows.low * signed_stride(nb01);
  if (!launch.accessible("src0", base, 1,
                         {{ne00 * static_cast<std::int64_t>(sizeof(S)), 1},
                          {rows.count(), signed_stride(nb01)},
                          {ne11, signed_stride(nb02)},
                          {ne12.z, signed_stride(nb03)}},
                         Access::kRead))
    return launch.illegal_address();

  for (std::int64_t i12 = 0; i12 < ne12.z; ++i12) {
    for (std::int64_t i11 = 0; i11 < ne11; ++i11) {
      for (std::int64_t i10 = 0; i10 < n10; ++i10) {
        const std::int64_t i01 = index_at(i10, i11, i12);
        const auto* in =
            reinterpret_cast<const S*>(reinterpret_cast<const unsigned char*>(src0) + i01 * signed_stride(nb01) +
                                       i11 * signed_stride(nb02) + i12 * signed_stride(nb03));
        D* out = dst + i10 * signed_stride(s1) + i11 * signed_stride(s2) + i12 * signed_stride(s3);
        for (std::int64_t i00 = 0; i00 < ne00; ++i00) out[i00] = cast<D>(in[i00]);
      }
    }
  }
  return 0;
}

template <class S, class I, class D>
using SetRows = Signature<const S*, const I*, D*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                          std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                          std::int64_t, std::int64_t, std::int64_t, Uint3, Uint3, Uint3, Uint3, Uint3>;

template <class S, class I, class D>
int set_rows(const Launch& launch, const typename SetRows<S, I, D>::Values& parameters) {
  const auto& [src0, src1, dst, ne_total, ne10, ne11_unused, ne12_unused, ne13, s01, s02, s03, s10, s11, s12, s1, s2,
               s3, ne00, ne01, ne02, ne11, ne12] = parameters;
  if (!divisors_valid({ne00, ne01, ne02, ne11, ne12})) return launch.unsupported("an extent of 0");
  const std::int64_t n = std::min<std::int64_t>(ne_total, std::int64_t{launch.grid().x} * launch.block().x);
  if (n <= 0) return 0;
  // The box of (i00, i01, i02, i03) the first n elements reach.
  const std::int64_t row = ne00.z;
  const std::int64_t matrix = row * ne01.z;
  const std::int64_t plane = matrix * ne02.z;
  const std::int64_t n03 = (n - 1) / plane + 1;
  const std::int64_t n02 = n >= plane ? ne02.z : (n - 1) / matrix + 1;
  const std::int64_t n01 = n >= matrix ? ne01.z : (n - 1) / row + 1;
  const std::int64_t n00 = std::min(n, row);
  if (!launch.accessible("src0", src0, sizeof(S), {{n00, 1}, {n01, s01}, {n02, s02}, {n03, s03}}, Access::kRead) ||
      !launch.accessible(
          "src1", src1, sizeof(I),
          {{n01, s10}, {std::min<std::int64_t>(n02, ne11.z), s11}, {std::min<std::int64_t>(n03, ne12.z), s12}},
          Access::kRead))
    return launch.illegal_address();
  const auto target_row = [&](std::int64_t i01, std::int64_t i02, std::int64_t i03) {
    return static_cast<std::int64_t>(src1[i01 * s10 + (i02 % ne11.z) * s11 + (i03 % ne12.z) * s12]);
  };
  IndexRange rows;
  for (std::int64_t i03 = 0; i03 < n03; ++i03)
    for (std::int64_t i02 = 0; i02 < n02; ++i02)
      for (std::int64_t i01 = 0; i01 < n01; ++i01) rows.add(target_row(i01, i02, i03));
  if (!launch.accessible("dst", dst + rows.low * s1, sizeof(D), {{n00, 1}, {rows.count(), s1}, {n02, s2}, {n03, s3}},
                         Access::kWrite))
    return launch.illegal_address();

  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t i00 = i % row;
    const std::int64_t i01 = i / row % ne01.z;
    const std::int64_t i02 = i / matrix % ne02.z;
    const std::int64_t i03 = i / plane;
    dst[target_row(i01, i02, i03) * s1 + i02 * s2 + i03 * s3 + i00] =
        cast<D>(src0[i01 * s01 + i02 * s02 + i03 * s03 + i00]);
  }
  return 0;
}

}  // namespace

std::vector<KernelEntry> rows_kernels() {
  constexpr const char* kGetTail = "EvPKT_PKiPT0_ll5uint3mmmmmmmmm";
  return {
      kernel<GetRows<float, float>, get_rows_float<float, float>>(std::string("_Z16k_get_rows_floatIff") + kGetTail),
      kernel<GetRows<float, Half>, get_rows_float<float, Half>>(std::string("_Z16k_get_rows_floatIf6__half") +
                                                                kGetTail),
      kernel<GetRows<Half, float>, get_rows_float<Half, float>>(std::string("_Z16k_get_rows_floatI6__halff") +
                                                                kGetTail),
      kernel<GetRows<Half, Half>, get_rows_float<Half, Half>>(std::string("_Z16k_get_rows_floatI6__halfS0_") +
                                                              kGetTail),
      kernel<SetRows<float, std::int64_t, float>, set_rows<float, std::int64_t, float>>(
          "_Z10k_set_rowsIflfEvPKT_PKT0_PT1_llllllllllllll5uint3S8_S8_S8_S8_"),
      kernel<SetRows<float, std::int32_t, float>, set_rows<float, std::int32_t, float>>(
          "_Z10k_set_rowsIfifEvPKT_PKT0_PT1_llllllllllllll5uint3S8_S8_S8_S8_"),
      kernel<SetRows<float, std::int64_t, Half>, set_rows<float, std::int64_t, Half>>(
          "_Z10k_set_rowsIfl6__halfEvPKT_PKT0_PT1_llllllllllllll5uint3S9_S9_S9_S9_"),
      kernel<SetRows<float, std::int32_t, Half>, set_rows<float, std::int32_t, Half>>(
          "_Z10k_set_rowsIfi6__halfEvPKT_PKT0_PT1_llllllllllllll5uint3S9_S9_S9_S9_"),
  };
}

}  // namespace gpubroker::sim::ggml
