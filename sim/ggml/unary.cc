// unary_gated_op_kernel<op, T> (ggml-cuda/unary.cu): the gated linear units (SWIGLU, GEGLU, ...):
// dst[i] = op(x[j0]) * g[j1] for the k elements of dst, rows of n; x's rows are o0 elements
// apart and g's o1 (x and g may be two halves of one tensor). One thread per element.
#include <cstdint>
#include <string>
#include <vector>

#include "sim/ggml/activations.h"
#include "sim/ggml/kernels.h"

namespace gpubroker::sim::ggml {
namespace {

template <class T>
using UnaryGated = Signature<const T*, const T*, T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t>;

template <float (*kOp)(float), class T>
int unary_gated(const Launch& launch, const typename UnaryGated<T>::Values& parameters) {
  const auto& [x, g, dst, k, n, o0, o1] = parameters;
  if (n <= 0) return launch.unsupported("a row length n below 1");
  const std::int64_t count = std::min<std::int64_t>(k, std::int64_t{launch.grid().x} * launch.block().x);
  if (count <= 0) return 0;
  const std::int64_t rows = (count - 1) / n + 1;
  const std::int64_t columns = std::min(count, n);
  if (!launch.accessible("x", x, sizeof(T), {{columns, 1}, {rows, o0}}, Access::kRead) ||
      !launch.accessible("g", g, sizeof(T), {{columns, 1}, {rows, o1}}, Access::kRead) ||
      !launch.accessible("dst", dst, sizeof(T), {{count, 1}}, Access::kWrite))
    return launch.illegal_address();
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t row = i / n;
    const std::int64_t column = i % n;
    dst[i] = cast<T>(kOp(cast<float>(x[row * o0 + column])) * cast<float>(g[row * o1 + column]));
  }
  return 0;
}

}  // namespace

std::vector<KernelEntry> unary_kernels() {
  // The ops are file-local in unary.cu: their names carry the hash nvcc gave that file.
  constexpr const char* kPrefix = "_Z21unary_gated_op_kernelIXadL_ZN38_INTERNAL_ace4e482_8_unary_cu_eb6d5366";
  constexpr const char* kFloat = "EfEEfEvPKT0_S3_PS1_llll";
  constexpr const char* kHalf = "EfEE6__halfEvPKT0_S4_PS2_llll";
  std::vector<KernelEntry> out;
  const auto add = [&]<float (*kOp)(float)>(const char* name) {
    out.push_back(kernel<UnaryGated<float>, unary_gated<kOp, float>>(std::string(kPrefix) + name + kFloat));
    out.push_back(kernel<UnaryGated<Half>, unary_gated<kOp, Half>>(std::string(kPrefix) + name + kHalf));
  };
  add.operator()<silu>("7op_silu");
  add.operator()<gelu>("7op_gelu");
  add.operator()<relu>("7op_relu");
  add.operator()<sigmoid>("10op_sigmoid");
  add.operator()<gelu_erf>("11op_gelu_erf");
  add.operator()<gelu_quick>("13op_gelu_quick");
  return out;
}

}  // namespace gpubroker::sim::ggml
