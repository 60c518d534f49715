// Element-wise copies with conversion (ggml-cuda/cpy.cu, convert.cu):
//
// cpy_scalar<cpy_1_scalar<src_t, dst_t>>: CPY/DUP between any two 4D layouts of ne elements;
// element i of the flattened source shape (ne00, ne01, ne02) goes to element i of the flattened
// destination shape (ne10, ne11, ne12). Strides are in bytes. One thread per element.
//
// convert_unary<src_t, dst_t>: a possibly non-contiguous (s01, s02, s03, in elements) tensor
// converted into a contiguous one, for the GEMMs that want F16 or F32 operands. Thread x is the
// column; block y walks the rows and block z the matrices (i02 fastest, by the ne02 divisor).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "sim/ggml/kernels.h"

namespace gpubroker::sim::ggml {
namespace {

// The box of (i0, i1, i2, i3) that the first n elements of a flattened (n0, n1, n2, ...) shape reach.
struct Box {
  std::int64_t n[4];
};
Box first_elements(std::int64_t n, std::int64_t n0, std::int64_t n1, std::int64_t n2) {
  const std::int64_t matrix = n0 * n1;
  const std::int64_t plane = matrix * n2;
  return {{std::min(n, n0), n >= matrix ? n1 : (n - 1) / n0 + 1, n >= plane ? n2 : (n - 1) / matrix + 1,
           (n - 1) / plane + 1}};
}

using CopyScalar = Signature<const char*, char*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, std::int64_t, std::int64_t>;

template <class S, class D>
int cpy_scalar(const Launch& launch, const CopyScalar::Values& parameters) {
  const auto& [cx, cdst, ne, ne00, ne01, ne02, nb00, nb01, nb02, nb03, ne10, ne11, ne12, nb10, nb11, nb12, nb13] =
      parameters;
  if (ne00 <= 0 || ne01 <= 0 || ne02 <= 0 || ne10 <= 0 || ne11 <= 0 || ne12 <= 0)
    return launch.unsupported("an extent below 1 (the kernel divides by them)");
  const std::int64_t n = std::min<std::int64_t>(ne, std::int64_t{launch.grid().x} * launch.block().x);
  if (n <= 0) return 0;
  const Box in = first_elements(n, ne00, ne01, ne02);
  const Box out = first_elements(n, ne10, ne11, ne12);
  if (!launch.accessible("cx", cx, 1,
                         {{static_cast<std::int64_t>(sizeof(S)), 1},
                          {in.n[0], nb00},
                          {in.n[1], nb01},
                          {in.n[2], nb02},
                          {in.n[3], nb03}},
                         Access::kRead) ||
      !launch.accessible("cdst", cdst, 1,
                         {{static_cast<std::int64_t>(sizeof(D)), 1},
                          {out.n[0], nb10},
                          {out.n[1], nb11},
                          {out.n[2], nb12},
                          {out.n[3], nb13}},
                         Access::kWrite))
    return launch.illegal_address();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t x_offset =
        i % ne00 * nb00 + i / ne00 % ne01 * nb01 + i / (ne00 * ne01) % ne02 * nb02 + i / (ne00 * ne01 * ne02) * nb03;
    const std::int64_t dst_offset =
        i % ne10 * nb10 + i / ne10 % ne11 * nb11 + i / (ne10 * ne11) % ne12 * nb12 + i / (ne10 * ne11 * ne12) * nb13;
    S value;
    std::memcpy(&value, cx + x_offset, sizeof(S));  // byte strides: no alignment is promised
    const D converted = cast<D>(value);
    std::memcpy(cdst + dst_offset, &converted, sizeof(D));
  }
  return 0;
}

template <class D>
using ConvertUnary = Signature<const void*, D*, std::int64_t, std::int64_t, std::int64_t, Uint3, std::int64_t,
                               std::int64_t, std::int64_t>;

template <class S, class D>
int convert_unary(const Launch& launch, const typename ConvertUnary<D>::Values& parameters) {
  const auto& [vx, y, ne00, ne01, ne0203, ne02, s01, s02, s03] = parameters;
  if (!divisors_valid({ne02})) return launch.unsupported("ne02 of 0");
  const std::int64_t n00 = std::min<std::int64_t>(ne00, std::int64_t{launch.grid().x} * launch.block().x);
  if (n00 <= 0 || ne01 <= 0 || ne0203 <= 0) return 0;
  const auto* x = static_cast<const S*>(vx);
  if (!launch.accessible(
          "vx", x, sizeof(S),
          {{n00, 1}, {ne01, s01}, {std::min<std::int64_t>(ne0203, ne02.z), s02}, {(ne0203 - 1) / ne02.z + 1, s03}},
          Access::kRead) ||
      !launch.accessible("y", y, sizeof(D), {{n00, 1}, {ne01, ne00}, {ne0203, ne01 * ne00}}, Access::kWrite))
    return launch.illegal_address();
  for (std::int64_t i0203 = 0; i0203 < ne0203; ++i0203) {
    const std::int64_t i02 = i0203 % ne02.z;
    const std::int64_t i03 = i0203 / ne02.z;
    for (std::int64_t i01 = 0; i01 < ne01; ++i01) {
      const S* in = x + i03 * s03 + i02 * s02 + i01 * s01;
      D* out = y + (i0203 * ne01 + i01) * ne00;
      for (std::int64_t i00 = 0; i00 < n00; ++i00) out[i00] = cast<D>(in[i00]);
    }
  }
  return 0;
}

}  // namespace

std::vector<KernelEntry> copy_kernels() {
  // cpy_1_scalar is file-local in cpy.cu: its name carries the hash nvcc gave that file.
  constexpr const char* kCopy = "_Z10cpy_scalarIXadL_ZN36_INTERNAL_a6ad3f57_6_cpy_cu_bfba63e212cpy_1_scalarI";
  constexpr const char* kConvertTail = "EvPKvPT0_lll5uint3lll";
  return {
      kernel<CopyScalar, cpy_scalar<float, float>>(std::string(kCopy) + "ffEEvPKcPcEEEvS3_S4_lllllllllllllll"),
      kernel<CopyScalar, cpy_scalar<float, Half>>(std::string(kCopy) + "f6__halfEEvPKcPcEEEvS4_S5_lllllllllllllll"),
      kernel<CopyScalar, cpy_scalar<Half, float>>(std::string(kCopy) + "6__halffEEvPKcPcEEEvS4_S5_lllllllllllllll"),
      kernel<CopyScalar, cpy_scalar<Half, Half>>(std::string(kCopy) + "6__halfS2_EEvPKcPcEEEvS4_S5_lllllllllllllll"),
      kernel<ConvertUnary<Half>, convert_unary<float, Half>>(std::string("_Z13convert_unaryIf6__half") + kConvertTail),
      kernel<ConvertUnary<float>, convert_unary<Half, float>>(std::string("_Z13convert_unaryI6__halff") + kConvertTail),
  };
}

}  // namespace gpubroker::sim::ggml
