// The 16-bit floating-point formats the sim's cuBLAS and kernel plugins read and write: IEEE 754
// binary16 (CUDA's __half, CUDA_R_16F) and bfloat16 (CUDA's __nv_bfloat16, CUDA_R_16BF: the top
// half of a float).
//
// Widening to float is exact. Narrowing rounds to nearest, ties to even, as the GPU's conversions
// do: overflow gives infinity, NaN stays NaN (quiet), binary16 subnormals are produced and read.
// Pure functions, any thread; they rely on the default floating-point environment (round to
// nearest, no flush-to-zero), which the sim never changes.
#pragma once

#include <bit>
#include <cstdint>

namespace gpubroker::sim {

inline float half_to_float(std::uint16_t half) {
  const std::uint32_t sign = std::uint32_t{half & 0x8000u} << 16;
  const std::uint32_t exponent = (half >> 10) & 0x1fu;
  const std::uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(magnitude) | sign);
  }
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));  // rebias 15 -> 127
}

inline std::uint16_t float_to_half(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u)  // NaN: keep the top payload bits, force quiet
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  if (magnitude >= 0x47800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65536 (or inf)
  if (magnitude < 0x38800000u) {
    // Below 2^-14, binary16's subnormal range, whose step is 2^-24: adding 0.5 (whose ulp is
    // 2^-24) makes the FPU round the value to that step, nearest even; the low mantissa bits of
    // the sum are then the subnormal's (0x400 when it rounds up to the smallest normal).
    const float shifted = std::bit_cast<float>(magnitude) + 0.5f;
    return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(shifted) - 0x3f000000u));
  }
  // Normal: rebias the exponent (127 -> 15) and round away the low 13 mantissa bits, ties to even.
  // A carry out of the mantissa moves into the exponent, up to infinity (65520 and above).
  const std::uint32_t odd = (magnitude >> 13) & 1u;
  magnitude += 0xc8000000u + 0xfffu + odd;
  return static_cast<std::uint16_t>(sign | (magnitude >> 13));
}

inline float bfloat16_to_float(std::uint16_t value) { return std::bit_cast<float>(std::uint32_t{value} << 16); }

inline std::uint16_t float_to_bfloat16(float value) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even; a carry may reach infinity
  return static_cast<std::uint16_t>(bits >> 16);
}

}  // namespace gpubroker::sim
