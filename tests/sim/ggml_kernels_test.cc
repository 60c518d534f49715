// Tests of the sim's ggml kernels (sim/ggml/), one family at a time, against direct reference
// computations in double: shapes, strides, non-contiguous views, broadcasting, the fusion flags
// the instances carry, the grid and block where the result depends on them, and the launches each
// implementation refuses. The kernels are called as the sim calls them, through a launch whose
// parameter block is packed by the kernel's signature (ggml_kernel_harness.h).
//
// The case tagged [wheel] checks every registered kernel against the fatbin of the wheel it was
// written for (the runner fixture tests/runners/setup_venv.sh installs), and reports SKIP without it.
#include <glob.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fatbin/elf_image.h"
#include "fatbin/fatbin.h"
#include "ggml_kernel_harness.h"
#include "sim/ggml/device_types.h"
#include "sim/ggml/reduce.h"
#include "tests/support/skip.h"

using namespace ggml_harness;
using gpubroker::sim::ggml::FusionArgs;
using gpubroker::sim::ggml::RopeCorrDims;
using gpubroker::sim::ggml::SoftMaxParams;

namespace {

constexpr GpubrokerSimDim3 dim(unsigned x, unsigned y = 1, unsigned z = 1) { return {x, y, z}; }

// |a - b| within `relative` of the larger magnitude, or within `absolute`.
bool close(double a, double b, double relative, double absolute = 0.0) {
  return std::fabs(a - b) <= std::max(absolute, relative * std::max(std::fabs(a), std::fabs(b)));
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

}  // namespace

// ---- reductions ---------------------------------------------------------------------------------

TEST_CASE("a block's sum adds as the device's butterfly does, not in thread order", "[ggml][reduce]") {
  using gpubroker::sim::ggml::block_sum;
  using gpubroker::sim::ggml::warp_sum;
  // 2^24 + 1 rounds back to 2^24 in float. In thread order the 1 is lost; the butterfly first adds
  // lane 0 to lane 16 (giving 0), then lane 1's 1 survives.
  std::vector<float> lanes(32, 0.0f);
  lanes[0] = 16777216.0f;
  lanes[1] = 1.0f;
  lanes[16] = -16777216.0f;
  float in_order = 0.0f;
  for (float lane : lanes) in_order += lane;
  CHECK(in_order == 0.0f);
  CHECK(warp_sum(lanes) == 1.0f);
  // Two warps: each warp's sum, then the warps' sums added by the first warp's butterfly.
  std::vector<float> threads(64, 0.0f);
  threads[0] = 16777216.0f;
  threads[32] = 1.0f;
  threads[33] = -16777216.0f;
  CHECK(block_sum(threads) == 16777216.0f - 16777216.0f + 1.0f);
}

// ---- rms_norm_f32 ---------------------------------------------------------------------------------

namespace {

struct RmsCase {
  int ncols;
  unsigned rows, channels, samples;
  std::int64_t stride_row, stride_channel, stride_sample;
};

// The reference: x / sqrt(mean(x^2) + eps), times mul and plus add when given (broadcast rows).
double rms_reference(const float* row, int ncols, int col, float eps) {
  double sum = 0;
  for (int c = 0; c < ncols; ++c) sum += double{row[c]} * row[c];
  return row[col] / std::sqrt(sum / ncols + eps);
}

}  // namespace

TEST_CASE("rms_norm_f32 normalizes each row of a strided view, and fuses a broadcast multiply and add",
          "[ggml][rms_norm]") {
  const RmsCase shape = GENERATE(RmsCase{64, 3, 2, 2, 64, 3 * 64, 6 * 64}, RmsCase{300, 2, 3, 1, 320, 700, 2200},
                                 RmsCase{1000, 1, 1, 1, 1000, 1000, 1000});
  const float eps = 1e-5f;
  const std::size_t span = shape.stride_sample * shape.samples + shape.stride_row;
  Buffer<float> x(values(span, 1));
  const std::size_t rows = std::size_t{shape.rows} * shape.channels * shape.samples;
  // mul: one row per channel (broadcast over rows and samples); add: one row for all.
  Buffer<float> mul(values(shape.ncols * shape.channels, 2));
  Buffer<float> add(values(shape.ncols, 3));
  const Uint3 one = fastdiv(1);
  const auto x_row = [&](unsigned r, unsigned c, unsigned s) {
    return &x[s * shape.stride_sample + c * shape.stride_channel + r * shape.stride_row];
  };
  const auto check_rows = [&](Buffer<float>& dst, bool with_mul, bool with_add) {
    for (unsigned s = 0; s < shape.samples; ++s)
      for (unsigned c = 0; c < shape.channels; ++c)
        for (unsigned r = 0; r < shape.rows; ++r)
          for (int col = 0; col < shape.ncols; ++col) {
            double expected = rms_reference(x_row(r, c, s), shape.ncols, col, eps);
            if (with_mul) expected *= mul[c * shape.ncols + col];
            if (with_add) expected += add[col];
            const float got = dst[((s * shape.channels + c) * shape.rows + r) * shape.ncols + col];
            INFO("sample " << s << " channel " << c << " row " << r << " col " << col);
            REQUIRE(close(got, expected, 1e-5, 1e-6));
          }
  };
  const GpubrokerSimDim3 grid = dim(shape.rows, shape.channels, shape.samples);
  const bool wide = shape.ncols >= 1024;
  const unsigned block = wide ? 1024 : 256;
  const std::string size = wide ? "1024" : "256";
  // Plain; times the norm's weight (a row per channel, broadcast over rows and samples); and plus
  // a bias (one row for all) as well.
  const Uint3 none{};
  for (const auto& [with_mul, with_add] : {std::pair{false, false}, std::pair{true, false}, std::pair{true, true}}) {
    INFO("multiply " << with_mul << ", add " << with_add);
    Buffer<float> dst(rows * shape.ncols, NAN);
    REQUIRE(launch("rms_norm_f32<" + size + (with_mul ? ", true" : ", false") + (with_add ? ", true>" : ", false>"),
                   grid, dim(block), x.data(), dst.data(), shape.ncols, shape.stride_row, shape.stride_channel,
                   shape.stride_sample, eps, static_cast<const float*>(with_mul ? mul.data() : nullptr),
                   std::int64_t{0}, std::int64_t{with_mul ? shape.ncols : 0}, std::int64_t{0},
                   with_mul ? fastdiv(shape.ncols) : none, with_mul ? one : none,
                   with_mul ? fastdiv(shape.channels) : none, with_mul ? one : none,
                   static_cast<const float*>(with_add ? add.data() : nullptr), std::int64_t{0}, std::int64_t{0},
                   std::int64_t{0}, with_add ? fastdiv(shape.ncols) : none, with_add ? one : none,
                   with_add ? one : none, with_add ? one : none) == 0);
    check_rows(dst, with_mul, with_add);
  }
}

TEST_CASE(
    "rms_norm_f32 refuses a block that is not its template's, a layout that is not its signature, and "
    "memory it may not touch",
    "[ggml][rms_norm]") {
  Buffer<float> x(values(64, 1));
  Buffer<float> dst(64);
  const auto run = [&](GpubrokerSimDim3 grid, GpubrokerSimDim3 block, float* out) {
    return launch("rms_norm_f32<256, false, false>", grid, block, x.data(), out, 64, std::int64_t{64}, std::int64_t{64},
                  std::int64_t{64}, 1e-5f, static_cast<const float*>(nullptr), std::int64_t{0}, std::int64_t{0},
                  std::int64_t{0}, Uint3{}, Uint3{}, Uint3{}, Uint3{}, static_cast<const float*>(nullptr),
                  std::int64_t{0}, std::int64_t{0}, std::int64_t{0}, Uint3{}, Uint3{}, Uint3{}, Uint3{});
  };
  CHECK(run(dim(1), dim(256), dst.data()) == 0);
  CHECK(run(dim(1), dim(128), dst.data()) == kLaunchFailed);
  CHECK(run(dim(2), dim(256), dst.data()) == kIllegalAddress);  // a second row past both buffers
  CHECK(run(dim(1), dim(256), dst.data() + 1) == kIllegalAddress);
  // Three parameters where the signature has 23.
  CHECK(launch("rms_norm_f32<256, false, false>", dim(1), dim(256), x.data(), dst.data(), 64) == kLaunchFailed);
}

// ---- mul_mat_vec_f --------------------------------------------------------------------------------

namespace {

// dst[j][row] of channel c = sum over k of x[c / ratio][row][k] * y[c][j][k] (y rounded to half
// first when `half_y`), in double.
double dot(const Half* x_row, const float* y_col, int ncols, bool half_y) {
  double sum = 0;
  for (int k = 0; k < ncols; ++k) sum += double{widen(x_row[k])} * (half_y ? widen(half(y_col[k])) : y_col[k]);
  return sum;
}

double magnitude(const Half* x_row, const float* y_col, int ncols) {
  double sum = 0;
  for (int k = 0; k < ncols; ++k) sum += std::fabs(double{widen(x_row[k])} * y_col[k]);
  return sum;
}

template <class... Ts>
int mmvf(const std::string& name, GpubrokerSimDim3 grid, unsigned block, const Ts&... arguments) {
  return launch(name, grid, dim(block), arguments...);
}

}  // namespace

TEST_CASE("mul_mat_vec_f multiplies half rows by a few columns, broadcasting x's channels", "[ggml][mul_mat_vec]") {
  // x: 4 channels of 5 rows of 96 (rows 128 apart, channels 700 apart); y: 8 channels of 3
  // columns (100 apart), channel ratio 2 (grouped-query attention's broadcast).
  const int ncols = 96, rows = 5, ncols_dst = 3, channels_dst = 8, ratio = 2;
  const int stride_row = 128, stride_channel_x = 700, stride_col_y = 100, stride_channel_y = 320;
  const int stride_col_dst = rows, stride_channel_dst = rows * ncols_dst;
  Buffer<Half> x(halves(values(stride_channel_x * (channels_dst / ratio), 4)));
  Buffer<float> y(values(stride_channel_y * channels_dst, 5));
  const bool half_sums = GENERATE(false, true);
  const std::string name =
      std::string("mul_mat_vec_f<__half, ") + (half_sums ? "__half" : "float") + ", 3, 64, false, false>";
  Buffer<float> dst(stride_channel_dst * channels_dst, NAN);
  REQUIRE(mmvf(name, dim(rows, channels_dst, 1), 64, static_cast<const Half*>(x.data()),
               static_cast<const float*>(y.data()), static_cast<const std::int32_t*>(nullptr), FusionArgs{}, dst.data(),
               ncols / 2, Uint3{}, stride_row, stride_col_y / 2, stride_col_dst, fastdiv(ratio), stride_channel_x,
               stride_channel_y, stride_channel_dst, fastdiv(1), 0, 0, 0, 0) == 0);
  for (int c = 0; c < channels_dst; ++c)
    for (int j = 0; j < ncols_dst; ++j)
      for (int r = 0; r < rows; ++r) {
        const Half* x_row = &x[(c / ratio) * stride_channel_x + r * stride_row];
        const float* y_col = &y[c * stride_channel_y + j * stride_col_y];
        INFO("channel " << c << " column " << j << " row " << r);
        // Half sums round each lane's products to half (2^-11 relative each): a looser bound.
        const double bound = (half_sums ? 4e-3 : 1e-6) * magnitude(x_row, y_col, ncols);
        REQUIRE(std::fabs(dst[c * stride_channel_dst + j * stride_col_dst + r] - dot(x_row, y_col, ncols, half_sums)) <=
                bound);
      }
}

TEST_CASE("mul_mat_vec_f sums in the precision its instance names: half sums lose what float sums keep",
          "[ggml][mul_mat_vec]") {
  // y = 1 + 2^-11 rounds to 1 in half. With 128 columns and 64 threads each thread has one pair:
  // in half, each lane is 1 * 1; in float, 1 * (1 + 2^-11).
  const int ncols = 128;
  Buffer<Half> x(std::vector<Half>(ncols, half(1.0f)));
  Buffer<float> y(std::vector<float>(ncols, 1.0f + 0x1p-11f));
  Buffer<float> dst(1, NAN);
  for (const bool half_sums : {true, false}) {
    const std::string name =
        std::string("mul_mat_vec_f<__half, ") + (half_sums ? "__half" : "float") + ", 1, 64, false, false>";
    REQUIRE(mmvf(name, dim(1), 64, static_cast<const Half*>(x.data()), static_cast<const float*>(y.data()),
                 static_cast<const std::int32_t*>(nullptr), FusionArgs{}, dst.data(), ncols / 2, Uint3{}, ncols,
                 ncols / 2, 1, fastdiv(1), 0, 0, 0, fastdiv(1), 0, 0, 0, 0) == 0);
    CHECK(dst[0] == (half_sums ? 128.0f : 128.0f * (1.0f + 0x1p-11f)));
  }
}

TEST_CASE("mul_mat_vec_f with fusion adds the biases and gates by SWIGLU or GEGLU", "[ggml][mul_mat_vec]") {
  const int ncols = 64, rows = 40;
  Buffer<Half> x(halves(values(ncols * rows, 6)));
  Buffer<Half> gate(halves(values(ncols * rows, 7)));
  Buffer<float> y(values(ncols, 8));
  Buffer<float> x_bias(values(rows, 9));
  Buffer<float> gate_bias(values(rows, 10));
  const auto op = GENERATE(gpubroker::sim::ggml::kSwiglu, gpubroker::sim::ggml::kGeglu);
  const bool biases = GENERATE(false, true);
  Buffer<float> dst(rows, NAN);
  const FusionArgs fusion{biases ? x_bias.data() : nullptr, gate.data(), biases ? gate_bias.data() : nullptr, op};
  REQUIRE(mmvf("mul_mat_vec_f<__half, float, 1, 32, true, false>", dim(rows), 32, static_cast<const Half*>(x.data()),
               static_cast<const float*>(y.data()), static_cast<const std::int32_t*>(nullptr), fusion, dst.data(),
               ncols / 2, Uint3{}, ncols, ncols / 2, rows, fastdiv(1), 0, 0, 0, fastdiv(1), 0, 0, 0, 0) == 0);
  for (int r = 0; r < rows; ++r) {
    const double value = dot(&x[r * ncols], y.data(), ncols, false) + (biases ? x_bias[r] : 0.0);
    const double g = dot(&gate[r * ncols], y.data(), ncols, false) + (biases ? gate_bias[r] : 0.0);
    const double activated =
        op == gpubroker::sim::ggml::kSwiglu
            ? silu(g)
            : 0.5 * g * (1.0 + std::tanh(0.79788456080286535587989211986876 * g * (1.0 + 0.044715 * g * g)));
    INFO("row " << r);
    REQUIRE(close(dst[r], value * activated, 1e-5, 1e-6));
  }
}

TEST_CASE("mul_mat_vec_f multiplies float rows too, and refuses what it does not implement", "[ggml][mul_mat_vec]") {
  const int ncols = 130, rows = 3;  // 65 pairs: threads past the last pair add nothing
  Buffer<float> x(values(ncols * rows, 11));
  Buffer<float> y(values(ncols * 2, 12));
  Buffer<float> dst(rows * 2, NAN);
  const auto run = [&](const std::string& name, unsigned block, const std::int32_t* ids, FusionArgs fusion) {
    return mmvf(name, dim(rows), block, static_cast<const float*>(x.data()), static_cast<const float*>(y.data()), ids,
                fusion, dst.data(), ncols / 2, Uint3{}, ncols, ncols / 2, rows, fastdiv(1), 0, 0, 0, fastdiv(1), 0, 0,
                0, 0);
  };
  REQUIRE(run("mul_mat_vec_f<float, float, 2, 64, false, false>", 64, nullptr, FusionArgs{}) == 0);
  for (int j = 0; j < 2; ++j)
    for (int r = 0; r < rows; ++r) {
      double expected = 0;
      for (int k = 0; k < ncols; ++k) expected += double{x[r * ncols + k]} * y[j * ncols + k];
      CHECK(close(dst[j * rows + r], expected, 1e-5, 1e-6));
    }
  Buffer<std::int32_t> ids(std::vector<std::int32_t>{0});
  CHECK(run("mul_mat_vec_f<float, float, 2, 64, false, false>", 32, nullptr, FusionArgs{}) == kLaunchFailed);
  CHECK(run("mul_mat_vec_f<float, float, 2, 64, false, false>", 64, ids.data(), FusionArgs{}) == kLaunchFailed);
  Buffer<float> gate(values(ncols * rows, 13));
  CHECK(run("mul_mat_vec_f<float, float, 1, 64, true, false>", 64, nullptr,
            FusionArgs{nullptr, gate.data(), nullptr, gpubroker::sim::ggml::kReglu}) == kLaunchFailed);
}

// ---- rope_norm -----------------------------------------------------------------------------------

namespace {

struct RopeSetup {
  int head_dim = 16, heads = 3, tokens = 4, n_dims = 12;  // the last 4 columns are not rotated
  float freq_base = 10000.0f;
  float theta_scale() const { return std::pow(freq_base, -2.0f / static_cast<float>(n_dims)); }
};

// (x0 cos - x1 sin, x0 sin + x1 cos) at theta = pos * theta_scale^(i0/2) / freq_factor, the sine
// negated backwards.
void rope_reference(const float* in, double pos, const RopeSetup& r, const float* freq_factors, bool forward, int i0,
                    double* out) {
  if (i0 >= r.n_dims) {
    out[0] = in[i0];
    out[1] = in[i0 + 1];
    return;
  }
  const double theta = pos * std::pow(double{r.theta_scale()}, i0 / 2.0) / (freq_factors ? freq_factors[i0 / 2] : 1.0);
  const double sine = (forward ? 1 : -1) * std::sin(theta);
  out[0] = in[i0] * std::cos(theta) - in[i0 + 1] * sine;
  out[1] = in[i0] * sine + in[i0 + 1] * std::cos(theta);
}

}  // namespace

TEST_CASE(
    "rope_norm turns each pair of the first n_dims columns by its position, forwards and backwards, "
    "with and without frequency factors",
    "[ggml][rope]") {
  const RopeSetup r;
  const bool forward = GENERATE(true, false);
  const bool factors = GENERATE(false, true);
  // x: rows of 20 (a view of a wider tensor), heads 20 apart, tokens 3 * 20 + 8 apart.
  const int s01 = 20, s02 = 3 * 20 + 8;
  Buffer<float> x(values(s02 * r.tokens, 14));
  Buffer<std::int32_t> pos(std::vector<std::int32_t>{0, 1, 7, 300});
  Buffer<float> freq_factors(std::vector<float>{1.0f, 2.0f, 0.5f, 4.0f, 1.5f, 3.0f});
  Buffer<float> dst(r.head_dim * r.heads * r.tokens, NAN);
  const std::string name = std::string("rope_norm<") + (forward ? "true" : "false") + ", " +
                           (factors ? "true" : "false") + ", float, float>";
  REQUIRE(launch(name, dim(r.heads * r.tokens, 1), dim(1, 256), static_cast<const float*>(x.data()), dst.data(),
                 r.head_dim, r.heads, r.tokens, s01, s02, s02 * r.tokens, r.head_dim, r.head_dim * r.heads,
                 r.head_dim * r.heads * r.tokens, r.n_dims, static_cast<const std::int32_t*>(pos.data()), 1.0f, 0.0f,
                 1.0f, RopeCorrDims{{0.0f, 0.0f}}, r.theta_scale(),
                 static_cast<const float*>(factors ? freq_factors.data() : nullptr),
                 static_cast<const std::int64_t*>(nullptr), 0) == 0);
  for (int t = 0; t < r.tokens; ++t)
    for (int h = 0; h < r.heads; ++h)
      for (int i0 = 0; i0 < r.head_dim; i0 += 2) {
        double expected[2];
        rope_reference(&x[t * s02 + h * s01], pos[t], r, factors ? freq_factors.data() : nullptr, forward, i0,
                       expected);
        const float* got = &dst[(t * r.heads + h) * r.head_dim + i0];
        INFO("token " << t << " head " << h << " column " << i0);
        REQUIRE(close(got[0], expected[0], 1e-4, 1e-4));
        REQUIRE(close(got[1], expected[1], 1e-4, 1e-4));
      }
}

TEST_CASE("rope_norm fused with SET_ROWS writes each token's rotated heads as halves into the cache row it names",
          "[ggml][rope]") {
  const RopeSetup r;
  Buffer<float> x(values(r.head_dim * r.heads * r.tokens, 15));
  Buffer<std::int32_t> pos(std::vector<std::int32_t>{5, 6, 7, 8});
  Buffer<std::int64_t> cache_rows(std::vector<std::int64_t>{9, 2, 4, 0});
  const int row_stride = r.head_dim * r.heads + 16;  // a cache row of all heads, padded
  Buffer<Half> cache(std::vector<Half>(row_stride * 10, half(-7.0f)));
  REQUIRE(launch("rope_norm<true, false, float, __half>", dim(r.heads * r.tokens, 1), dim(1, 256),
                 static_cast<const float*>(x.data()), cache.data(), r.head_dim, r.heads, r.tokens, r.head_dim,
                 r.head_dim * r.heads, r.head_dim * r.heads * r.tokens, r.head_dim, r.head_dim * r.heads,
                 r.head_dim * r.heads * r.tokens, r.n_dims, static_cast<const std::int32_t*>(pos.data()), 1.0f, 0.0f,
                 1.0f, RopeCorrDims{{0.0f, 0.0f}}, r.theta_scale(), static_cast<const float*>(nullptr),
                 static_cast<const std::int64_t*>(cache_rows.data()), row_stride) == 0);
  std::set<int> written;
  for (int t = 0; t < r.tokens; ++t) {
    written.insert(static_cast<int>(cache_rows[t]));
    for (int h = 0; h < r.heads; ++h)
      for (int i0 = 0; i0 < r.head_dim; i0 += 2) {
        double expected[2];
        rope_reference(&x[(t * r.heads + h) * r.head_dim], pos[t], r, nullptr, true, i0, expected);
        const Half* got = &cache[cache_rows[t] * row_stride + h * r.head_dim + i0];
        REQUIRE(close(widen(got[0]), expected[0], 2e-3, 1e-3));  // within half's rounding
        REQUIRE(close(widen(got[1]), expected[1], 2e-3, 1e-3));
      }
  }
  for (int row = 0; row < 10; ++row)
    if (!written.contains(row)) CHECK(widen(cache[row * row_stride]) == -7.0f);  // other rows untouched
  CHECK(widen(cache[9 * row_stride + r.head_dim * r.heads]) == -7.0f);           // nor the padding
}

TEST_CASE("rope_norm applies YaRN's ramp and magnitude when ext_factor is set", "[ggml][rope]") {
  const RopeSetup r;
  Buffer<float> x(values(r.head_dim, 16));
  Buffer<std::int32_t> pos(std::vector<std::int32_t>{1000});
  Buffer<float> dst(r.head_dim, NAN);
  const float freq_scale = 0.25f, ext_factor = 1.0f, attn_factor = 1.0f;
  const RopeCorrDims corr{{1.5f, 4.0f}};
  REQUIRE(launch("rope_norm<true, false, float, float>", dim(1, 1), dim(1, 256), static_cast<const float*>(x.data()),
                 dst.data(), r.head_dim, 1, 1, r.head_dim, r.head_dim, r.head_dim, r.head_dim, r.head_dim, r.head_dim,
                 r.n_dims, static_cast<const std::int32_t*>(pos.data()), freq_scale, ext_factor, attn_factor, corr,
                 r.theta_scale(), static_cast<const float*>(nullptr), static_cast<const std::int64_t*>(nullptr),
                 0) == 0);
  for (int i0 = 0; i0 < r.n_dims; i0 += 2) {
    // YaRN: theta between the interpolated and the extrapolated angle by the ramp over the pair
    // index, and the magnitude scaled by 1 + 0.1 ln(1 / freq_scale).
    const double extrapolated = 1000.0 * std::pow(double{r.theta_scale()}, i0 / 2.0);
    const double ramp = 1.0 - std::min(1.0, std::max(0.0, (i0 / 2 - 1.5) / (4.0 - 1.5)));
    const double theta = freq_scale * extrapolated * (1 - ramp) + extrapolated * ramp;
    const double scale = 1.0 + 0.1 * std::log(1.0 / freq_scale);
    INFO("column " << i0);
    CHECK(close(dst[i0], (x[i0] * std::cos(theta) - x[i0 + 1] * std::sin(theta)) * scale, 1e-3, 1e-4));
    CHECK(close(dst[i0 + 1], (x[i0] * std::sin(theta) + x[i0 + 1] * std::cos(theta)) * scale, 1e-3, 1e-4));
  }
}

// ---- k_get_rows_float, k_set_rows -----------------------------------------------------------------

TEST_CASE("k_get_rows_float gathers the indexed rows of each matrix into a strided destination, converting",
          "[ggml][rows]") {
  // src0: 2 matrices (i11) of 10 rows of 6 halves (rows 8 apart); src1: 3 indices per matrix.
  const int ne00 = 6, rows = 10, matrices = 2, picks = 3, nb01 = 8 * 2, nb02 = rows * nb01;
  Buffer<Half> src0(halves(values(rows * 8 * matrices, 17)));
  Buffer<std::int32_t> src1(std::vector<std::int32_t>{9, 0, 4, 4, 1, 7});
  const int s1 = 7, s2 = picks * s1;  // dst rows 7 floats apart
  Buffer<float> dst(s2 * matrices, NAN);
  REQUIRE(launch("k_get_rows_float<__half, float>", dim(picks, 1, matrices), dim(256),
                 static_cast<const Half*>(src0.data()), static_cast<const std::int32_t*>(src1.data()), dst.data(),
                 std::int64_t{ne00}, std::int64_t{matrices}, fastdiv(1), std::uint64_t(s1), std::uint64_t(s2),
                 std::uint64_t(s2 * matrices), std::uint64_t(nb01), std::uint64_t(nb02), std::uint64_t(nb02 * matrices),
                 std::uint64_t{1}, std::uint64_t{picks}, std::uint64_t{picks * matrices}) == 0);
  for (int m = 0; m < matrices; ++m)
    for (int p = 0; p < picks; ++p) {
      const int row = src1[m * picks + p];
      for (int c = 0; c < ne00; ++c) REQUIRE(dst[m * s2 + p * s1 + c] == widen(src0[m * rows * 8 + row * 8 + c]));
      CHECK(std::isnan(dst[m * s2 + p * s1 + ne00]));  // the padding of the row is not written
    }
  // An index past src0 reaches outside its memory.
  src1[2] = 1000;
  CHECK(launch("k_get_rows_float<__half, float>", dim(picks, 1, matrices), dim(256),
               static_cast<const Half*>(src0.data()), static_cast<const std::int32_t*>(src1.data()), dst.data(),
               std::int64_t{ne00}, std::int64_t{matrices}, fastdiv(1), std::uint64_t(s1), std::uint64_t(s2),
               std::uint64_t(s2 * matrices), std::uint64_t(nb01), std::uint64_t(nb02), std::uint64_t(nb02 * matrices),
               std::uint64_t{1}, std::uint64_t{picks}, std::uint64_t{picks * matrices}) == kIllegalAddress);
}

TEST_CASE(
    "k_set_rows stores each source row as halves at the cache row its index names, indices broadcast "
    "over heads",
    "[ggml][rows]") {
  // src0: 2 heads (i02) of 3 tokens (i01) of 8 floats; src1: one index per token for both heads.
  const int ne00 = 8, tokens = 3, heads = 2, cache_rows = 6;
  Buffer<float> src0(values(ne00 * tokens * heads, 18));
  Buffer<std::int64_t> src1(std::vector<std::int64_t>{5, 0, 3});
  // dst: per head, 6 cache rows of 10 halves (s1 = 10, s2 = 60).
  const std::int64_t s1 = 10, s2 = s1 * cache_rows;
  Buffer<Half> dst(std::vector<Half>(s2 * heads, half(-1.0f)));
  const std::int64_t total = ne00 * tokens * heads;
  REQUIRE(launch("k_set_rows<float, long, __half>", dim((total + 255) / 256), dim(256),
                 static_cast<const float*>(src0.data()), static_cast<const std::int64_t*>(src1.data()), dst.data(),
                 total, std::int64_t{tokens}, std::int64_t{1}, std::int64_t{1}, std::int64_t{1}, std::int64_t{ne00},
                 std::int64_t{ne00 * tokens}, std::int64_t{ne00 * tokens * heads}, std::int64_t{1},
                 std::int64_t{tokens}, std::int64_t{tokens}, s1, s2, s2 * heads, fastdiv(ne00), fastdiv(tokens),
                 fastdiv(heads), fastdiv(1), fastdiv(1)) == 0);
  for (int h = 0; h < heads; ++h)
    for (int t = 0; t < tokens; ++t)
      for (int c = 0; c < ne00; ++c)
        REQUIRE(widen(dst[h * s2 + src1[t] * s1 + c]) == widen(half(src0[(h * tokens + t) * ne00 + c])));
  for (int h = 0; h < heads; ++h) {
    CHECK(widen(dst[h * s2 + 1 * s1]) == -1.0f);  // rows no token names are untouched
    CHECK(widen(dst[h * s2 + 5 * s1 + ne00]) == -1.0f);
  }
}

// ---- cpy_scalar, convert_unary --------------------------------------------------------------------

TEST_CASE("cpy_scalar copies a transposed view element by element into another layout, converting", "[ggml][copy]") {
  // src: a 5 x 4 float matrix viewed transposed (element (i00, i01) at i00 * 4 + i01), two of them.
  const std::int64_t ne00 = 5, ne01 = 4, ne02 = 2, ne = ne00 * ne01 * ne02;
  Buffer<float> src(values(ne, 19));
  Buffer<Half> dst(std::vector<Half>(ne + 3, half(-2.0f)));
  REQUIRE(launch("cpy_scalar<&(void cpy_1_scalar<float, __half>(char const*, char*))>", dim(1), dim(64),
                 reinterpret_cast<const char*>(src.data()), reinterpret_cast<char*>(dst.data()), ne, ne00, ne01, ne02,
                 std::int64_t{4 * ne01}, std::int64_t{4}, std::int64_t{4 * ne00 * ne01}, std::int64_t{4 * ne},
                 ne00 * ne01, ne02, std::int64_t{1}, std::int64_t{2}, std::int64_t{2 * ne00 * ne01},
                 std::int64_t{2 * ne}, std::int64_t{2 * ne}) == 0);
  for (std::int64_t m = 0; m < ne02; ++m)
    for (std::int64_t i01 = 0; i01 < ne01; ++i01)
      for (std::int64_t i00 = 0; i00 < ne00; ++i00)
        REQUIRE(widen(dst[m * ne00 * ne01 + i01 * ne00 + i00]) == widen(half(src[m * ne00 * ne01 + i00 * ne01 + i01])));
  CHECK(widen(dst[ne]) == -2.0f);
  // A grid of fewer threads than elements copies only the first grid x block of them.
  Buffer<float> some(std::vector<float>(ne, -3.0f));
  REQUIRE(launch("cpy_scalar<&(void cpy_1_scalar<float, float>(char const*, char*))>", dim(1), dim(16),
                 reinterpret_cast<const char*>(src.data()), reinterpret_cast<char*>(some.data()), ne, ne,
                 std::int64_t{1}, std::int64_t{1}, std::int64_t{4}, std::int64_t{4 * ne}, std::int64_t{4 * ne},
                 std::int64_t{4 * ne}, ne, std::int64_t{1}, std::int64_t{1}, std::int64_t{4}, std::int64_t{4 * ne},
                 std::int64_t{4 * ne}, std::int64_t{4 * ne}) == 0);
  for (std::int64_t i = 0; i < ne; ++i) REQUIRE(some[i] == (i < 16 ? src[i] : -3.0f));
}

TEST_CASE("convert_unary makes a contiguous half copy of a strided float tensor, and back", "[ggml][copy]") {
  // x: 3 x 2 matrices (i02 of 3, i03 of 2) of 4 rows of 10 floats, rows 12 apart.
  const std::int64_t ne00 = 10, ne01 = 4, ne02 = 3, ne03 = 2, s01 = 12, s02 = s01 * ne01 + 5, s03 = s02 * ne02;
  Buffer<float> x(values(s03 * ne03, 20));
  Buffer<Half> y(ne00 * ne01 * ne02 * ne03);
  REQUIRE(launch("convert_unary<float, __half>", dim(1, ne01, ne02 * ne03), dim(256),
                 static_cast<const void*>(x.data()), y.data(), ne00, ne01, ne02 * ne03, fastdiv(ne02), s01, s02,
                 s03) == 0);
  for (std::int64_t i3 = 0; i3 < ne03; ++i3)
    for (std::int64_t i2 = 0; i2 < ne02; ++i2)
      for (std::int64_t i1 = 0; i1 < ne01; ++i1)
        for (std::int64_t i0 = 0; i0 < ne00; ++i0)
          REQUIRE(widen(y[((i3 * ne02 + i2) * ne01 + i1) * ne00 + i0]) ==
                  widen(half(x[i3 * s03 + i2 * s02 + i1 * s01 + i0])));
  Buffer<float> back(y.size());
  REQUIRE(launch("convert_unary<__half, float>", dim(1, ne01, ne02 * ne03), dim(256),
                 static_cast<const void*>(y.data()), back.data(), ne00, ne01, ne02 * ne03, fastdiv(ne02), ne00,
                 ne00 * ne01, ne00 * ne01 * ne02) == 0);
  for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(back[i] == widen(y[i]));
}

// ---- soft_max_f32 --------------------------------------------------------------------------------

namespace {

double alibi(const SoftMaxParams& p, int head) {
  if (p.max_bias <= 0) return 1.0;
  return head < static_cast<int>(p.n_head_log2)
             ? std::pow(double{p.m0}, head + 1)
             : std::pow(double{p.m1}, 2 * (head - static_cast<int>(p.n_head_log2)) + 1);
}

}  // namespace

TEST_CASE(
    "soft_max_f32 takes each row's softmax of scaled logits plus the head's slope times a broadcast mask, "
    "with sinks",
    "[ggml][softmax]") {
  const bool templated = GENERATE(false, true);
  const int ncols = templated ? 256 : 100, rows = 3, heads = 4, sequences = 2;
  const unsigned block = templated ? 256 : 32;
  Buffer<float> x(values(ncols * rows * heads * sequences, 21));
  // The mask: one per row and head parity (ne12 = 2: broadcast over the heads modulo 2 and over
  // the sequences), with some masked-out columns.
  std::vector<float> mask_values = values(ncols * rows * 2, 22);
  for (int i = 0; i < ncols * rows * 2; i += 7) mask_values[i] = -std::numeric_limits<float>::infinity();
  Buffer<Half> mask(halves(mask_values));
  Buffer<float> sinks(values(heads, 23));
  SoftMaxParams p{};
  p.ncols = ncols;
  p.nb11 = ncols * 2;
  p.nb12 = ncols * rows * 2;
  p.nb13 = 0;
  p.ne12 = 2;
  p.ne13 = 1;
  p.scale = 0.5f;
  p.max_bias = 8.0f;
  p.n_head_log2 = 2;
  p.m0 = std::pow(2.0f, -8.0f / 2);
  p.m1 = std::pow(2.0f, -4.0f / 2);
  const bool with_sinks = GENERATE(false, true);
  Buffer<float> dst(x.size(), NAN);
  const std::string name = templated ? "soft_max_f32<true, 256, 256, __half>" : "soft_max_f32<true, 0, 0, __half>";
  REQUIRE(launch(name, dim(rows, heads, sequences), dim(block), static_cast<const float*>(x.data()),
                 static_cast<const Half*>(mask.data()), static_cast<const float*>(with_sinks ? sinks.data() : nullptr),
                 dst.data(), p) == 0);
  for (int s = 0; s < sequences; ++s)
    for (int h = 0; h < heads; ++h)
      for (int r = 0; r < rows; ++r) {
        const int row = (s * heads + h) * rows + r;
        std::vector<double> v(ncols);
        double max = with_sinks ? sinks[h] : -INFINITY;
        for (int c = 0; c < ncols; ++c) {
          v[c] = double{x[row * ncols + c]} * p.scale + alibi(p, h) * widen(mask[((h % 2) * rows + r) * ncols + c]);
          max = std::max(max, v[c]);
        }
        double sum = with_sinks ? std::exp(sinks[h] - max) : 0.0;
        for (double& value : v) sum += (value = std::exp(value - max));
        for (int c = 0; c < ncols; ++c) {
          INFO("sequence " << s << " head " << h << " row " << r << " column " << c);
          REQUIRE(close(dst[row * ncols + c], v[c] / sum, 1e-5, 1e-7));
        }
      }
}

TEST_CASE("soft_max_f32 refuses a block it cannot reduce over", "[ggml][softmax]") {
  Buffer<float> x(values(64, 24));
  Buffer<float> dst(64);
  SoftMaxParams p{};
  p.ncols = 64;
  p.scale = 1.0f;
  const auto run = [&](const std::string& name, unsigned block) {
    return launch(name, dim(1), dim(block), static_cast<const float*>(x.data()), static_cast<const float*>(nullptr),
                  static_cast<const float*>(nullptr), dst.data(), p);
  };
  CHECK(run("soft_max_f32<true, 0, 0, float>", 64) == 0);
  CHECK(run("soft_max_f32<true, 0, 0, float>", 48) == kLaunchFailed);
  CHECK(run("soft_max_f32<true, 64, 64, float>", 32) == kLaunchFailed);
}

// ---- k_bin_bcast ---------------------------------------------------------------------------------

namespace {

// The fixed parameters of k_bin_bcast for contiguous dst (ne0 x ne1 x ne2 x ne3), src0 with rows
// `s01` apart, and src1 of (ne10, ne11, ne12, ne13) contiguous; then the operands.
template <class... Operands>
int bin_bcast(const std::string& name, GpubrokerSimDim3 grid, GpubrokerSimDim3 block, const float* src0, float* dst,
              const int (&ne)[4], int s01, const int (&ne1)[4], Operands... operands) {
  const int s1 = ne[0], s2 = s1 * ne[1], s3 = s2 * ne[2];
  const int t1 = ne1[0], t2 = t1 * ne1[1], t3 = t2 * ne1[2];
  return launch(name, grid, block, src0, static_cast<const float*>(nullptr), dst, ne[0], ne[1], ne[2], fastdiv(ne[3]),
                fastdiv(ne1[0]), fastdiv(ne1[1]), fastdiv(ne1[2]), fastdiv(ne1[3]), s1, s2, s3, 1, s01, s01 * ne[1],
                s01 * ne[1] * ne[2], 1, t1, t2, t3, static_cast<const float*>(operands)...);
}

}  // namespace

TEST_CASE("k_bin_bcast adds, subtracts, multiplies and divides with src1 broadcast, and fuses a chain of operands",
          "[ggml][binary]") {
  const int ne[4] = {6, 5, 3, 2};
  const int s01 = 8;  // src0's rows are 8 apart (a view)
  Buffer<float> src0(values(s01 * ne[1] * ne[2] * ne[3], 25));
  const int ne1[4] = {6, 1, 3, 1};  // one row per i2, shared by every row and by both i3
  Buffer<float> a(values(6 * 3, 26));
  Buffer<float> b(values(6 * 3, 27));
  Buffer<float> c(values(6 * 3, 28));
  const int count = ne[0] * ne[1] * ne[2] * ne[3];
  const auto expect = [&](Buffer<float>& dst, auto op, std::vector<Buffer<float>*> operands) {
    for (int i3 = 0; i3 < ne[3]; ++i3)
      for (int i2 = 0; i2 < ne[2]; ++i2)
        for (int i1 = 0; i1 < ne[1]; ++i1)
          for (int i0 = 0; i0 < ne[0]; ++i0) {
            float expected = src0[((i3 * ne[2] + i2) * ne[1] + i1) * s01 + i0];
            for (Buffer<float>* operand : operands) expected = op(expected, (*operand)[i2 * 6 + i0]);
            REQUIRE(dst[((i3 * ne[2] + i2) * ne[1] + i1) * ne[0] + i0] == expected);
          }
  };
  const GpubrokerSimDim3 grid = dim(1, 2, 2), block = dim(3, 4, 4);  // x loops over the row
  SECTION("add") {
    Buffer<float> dst(count, NAN);
    REQUIRE(bin_bcast("k_bin_bcast<&op_add, float, float, float, float const*>", grid, block, src0.data(), dst.data(),
                      ne, s01, ne1, a.data()) == 0);
    expect(dst, [](float x, float y) { return x + y; }, {&a});
  }
  SECTION("three adds fused") {
    Buffer<float> dst(count, NAN);
    REQUIRE(bin_bcast("k_bin_bcast<&op_add, float, float, float, float const*, float const*, float const*>", grid,
                      block, src0.data(), dst.data(), ne, s01, ne1, a.data(), b.data(), c.data()) == 0);
    expect(dst, [](float x, float y) { return x + y; }, {&a, &b, &c});
  }
  SECTION("two multiplies fused") {
    Buffer<float> dst(count, NAN);
    REQUIRE(bin_bcast("k_bin_bcast<&op_mul, float, float, float, float const*, float const*>", grid, block, src0.data(),
                      dst.data(), ne, s01, ne1, a.data(), b.data()) == 0);
    expect(dst, [](float x, float y) { return x * y; }, {&a, &b});
  }
  SECTION("subtract and divide") {
    Buffer<float> dst(count, NAN);
    REQUIRE(bin_bcast("k_bin_bcast<&op_sub, float, float, float, float const*>", grid, block, src0.data(), dst.data(),
                      ne, s01, ne1, a.data()) == 0);
    expect(dst, [](float x, float y) { return x - y; }, {&a});
    REQUIRE(bin_bcast("k_bin_bcast<&op_div, float, float, float, float const*>", grid, block, src0.data(), dst.data(),
                      ne, s01, ne1, a.data()) == 0);
    expect(dst, [](float x, float y) { return x / y; }, {&a});
  }
  SECTION("rows past the grid are not written") {
    Buffer<float> dst(count, NAN);
    REQUIRE(bin_bcast("k_bin_bcast<&op_add, float, float, float, float const*>", dim(1, 1, 2), dim(3, 4, 4),
                      src0.data(), dst.data(), ne, s01, ne1, a.data()) == 0);
    for (int i23 = 0; i23 < ne[2] * ne[3]; ++i23)
      for (int i1 = 0; i1 < ne[1]; ++i1) CHECK(std::isnan(dst[(i23 * ne[1] + i1) * ne[0]]) == (i1 >= 4));
  }
}

// ---- unary_gated_op_kernel -----------------------------------------------------------------------

TEST_CASE("unary_gated_op_kernel gates one half of each row by the activation of the other", "[ggml][unary]") {
  // One tensor of 5 rows of 2 x 12: x the first 12 of a row, g the second (o0 = o1 = 24).
  const int n = 12, rows = 5, k = n * rows;
  Buffer<float> both(values(2 * k, 29));
  const std::string op = GENERATE("op_silu", "op_gelu", "op_relu", "op_sigmoid", "op_gelu_erf", "op_gelu_quick");
  const auto activation = [&](double x) {
    if (op == "op_silu") return silu(x);
    if (op == "op_gelu")
      return 0.5 * x * (1.0 + std::tanh(0.79788456080286535587989211986876 * x * (1.0 + 0.044715 * x * x)));
    if (op == "op_relu") return std::max(x, 0.0);
    if (op == "op_sigmoid") return 1.0 / (1.0 + std::exp(-x));
    if (op == "op_gelu_erf") return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    return x / (1.0 + std::exp(-1.702 * x));
  };
  SECTION("in float") {
    Buffer<float> dst(k, NAN);
    REQUIRE(launch("unary_gated_op_kernel<&" + op + ", float>", dim(1), dim(256),
                   static_cast<const float*>(both.data()), static_cast<const float*>(both.data() + n), dst.data(),
                   std::int64_t{k}, std::int64_t{n}, std::int64_t{2 * n}, std::int64_t{2 * n}) == 0);
    for (int i = 0; i < k; ++i)
      REQUIRE(close(dst[i], activation(both[i / n * 2 * n + i % n]) * both[i / n * 2 * n + n + i % n], 1e-5, 1e-7));
  }
  SECTION("in half, from two tensors") {
    Buffer<Half> x(halves(values(k, 30)));
    Buffer<Half> g(halves(values(k, 31)));
    Buffer<Half> dst(k);
    REQUIRE(launch("unary_gated_op_kernel<&" + op + ", __half>", dim(1), dim(256), static_cast<const Half*>(x.data()),
                   static_cast<const Half*>(g.data()), dst.data(), std::int64_t{k}, std::int64_t{n}, std::int64_t{n},
                   std::int64_t{n}) == 0);
    for (int i = 0; i < k; ++i) REQUIRE(close(widen(dst[i]), activation(widen(x[i])) * widen(g[i]), 2e-3, 1e-4));
  }
}

// ---- k_compute_batched_ptrs ------------------------------------------------------------------------

TEST_CASE("k_compute_batched_ptrs writes each matrix's operand and result addresses, broadcasting src0",
          "[ggml][matmul]") {
  const std::int64_t ne12 = 4, ne13 = 2, ne23 = ne12 * ne13, r2 = 2, r3 = 1;
  const std::uint64_t nb02 = 1000, nb03 = 100000, nb12 = 64, nb13 = 4096, nbd2 = 128, nbd3 = 8192;
  Buffer<const void*> ptrs_src(2 * ne23);
  Buffer<void*> ptrs_dst(ne23);
  const auto* src0 = reinterpret_cast<const char*>(0x100000);
  const auto* src1 = reinterpret_cast<const char*>(0x200000);
  auto* dst = reinterpret_cast<char*>(0x300000);
  REQUIRE(launch("k_compute_batched_ptrs", dim(1, 1), dim(16, 16), static_cast<const void*>(src0),
                 static_cast<const void*>(src1), dst, ptrs_src.data(), ptrs_dst.data(), ne12, ne13, ne23, nb02, nb03,
                 nb12, nb13, nbd2, nbd3, r2, r3) == 0);
  for (std::int64_t i13 = 0; i13 < ne13; ++i13)
    for (std::int64_t i12 = 0; i12 < ne12; ++i12) {
      const std::int64_t slot = i12 + i13 * ne12;
      CHECK(ptrs_src[slot] == src0 + (i12 / r2) * nb02 + (i13 / r3) * nb03);
      CHECK(ptrs_src[ne23 + slot] == src1 + i12 * nb12 + i13 * nb13);
      CHECK(ptrs_dst[slot] == dst + i12 * nbd2 + i13 * nbd3);
    }
  CHECK(launch("k_compute_batched_ptrs", dim(1, 1), dim(16, 16), static_cast<const void*>(src0),
               static_cast<const void*>(src1), dst, ptrs_src.data(), ptrs_dst.data(), ne12, ne13, ne23 + 1, nb02, nb03,
               nb12, nb13, nbd2, nbd3, r2, r3) == kIllegalAddress);  // one slot past ptrs_src
}

// ---- the wheel ---------------------------------------------------------------------------------------

namespace {

// The wheel's libggml-cuda, where the runner fixture is installed; "" otherwise.
std::string wheel_library() {
  const char* venv = std::getenv("GPUBROKER_RUNNER_VENV");
  if (venv == nullptr) return "";
  const std::string pattern = std::string(venv) + "/lib/python3*/site-packages/cyllama_cuda12.libs/libggml-cuda-*.so";
  glob_t found{};
  std::string path;
  if (::glob(pattern.c_str(), 0, nullptr, &found) == 0 && found.gl_pathc == 1) path = found.gl_pathv[0];
  ::globfree(&found);
  return path;
}

}  // namespace

TEST_CASE("every registered kernel is in the wheel's fatbin, with the parameter layout its implementation reads",
          "[ggml][wheel]") {
  const std::string library = wheel_library();
  if (library.empty()) SKIP_CASE("no runner fixture (GPUBROKER_RUNNER_VENV; scripts/setup.sh installs it from PyPI)");
  std::ifstream file(library, std::ios::binary);
  const std::vector<char> raw{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(raw.data()), raw.size());
  auto elf = gpubroker::fatbin::detail::ElfImage::parse(bytes);
  REQUIRE(elf);
  const auto* section = elf.value().find_section(".nv_fatbin");
  REQUIRE(section != nullptr);
  // Every kernel of every cubin, by name: its parameter sizes.
  std::map<std::string, std::vector<std::uint32_t>> layouts;
  std::span<const std::byte> rest = section->data;
  while (rest.size() >= gpubroker::fatbin::kContainerHeaderSize) {
    auto size = gpubroker::fatbin::single_container_size(rest);
    REQUIRE(size);
    auto entries = gpubroker::fatbin::list_entries(rest.first(size.value()));
    REQUIRE(entries);
    for (const auto& entry : entries.value()) {
      if (entry.kind != gpubroker::fatbin::EntryKind::kCubin) continue;
      auto image = gpubroker::fatbin::payload(entry);
      REQUIRE(image);
      auto kernels = gpubroker::fatbin::kernels_from_cubin(image.value());
      REQUIRE(kernels);
      for (const auto& kernel : kernels.value()) {
        std::vector<std::uint32_t> sizes;
        for (const auto& param : kernel.params) sizes.push_back(param.size);
        layouts[kernel.name] = sizes;
      }
    }
    // Containers lie back to back, each padded to 8 bytes.
    rest = rest.subspan(std::min(rest.size(), (size.value() + 7) / 8 * 8));
  }
  INFO(layouts.size() << " kernels in the wheel");
  REQUIRE(layouts.size() > 1000);
  for (const auto& entry : gpubroker::sim::ggml::kernels()) {
    INFO(readable_name(entry.mangled_name));
    const auto found = layouts.find(entry.mangled_name);
    REQUIRE(found != layouts.end());
    CHECK(found->second == std::vector<std::uint32_t>(entry.param_sizes.begin(), entry.param_sizes.end()));
  }
}
