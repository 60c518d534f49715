// The scalar activations ggml's CUDA kernels apply (ggml-cuda/unary.cu and unary.cuh), in float as
// the device computes them, with the C library's expf, tanhf and erff for the device's.
#pragma once

#include <cmath>

namespace gpubroker::sim::ggml {

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

inline float relu(float x) { return std::fmax(x, 0.0f); }

// The tanh approximation (ggml_cuda_op_gelu_single).
inline float gelu(float x) {
  constexpr float kCoefA = 0.044715f;
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoefA * x * x)));
}

inline float gelu_erf(float x) {
  constexpr float kSqrt2Inverse = 0.70710678118654752440084436210484f;
  return 0.5f * x * (1.0f + std::erf(x * kSqrt2Inverse));
}

inline float gelu_quick(float x) {
  constexpr float kCoef = -1.702f;
  return x * (1.0f / (1.0f + std::exp(kCoef * x)));
}

// ggml_cuda_op_swiglu_oai_single(x, g) with its default alpha and limit.
inline float swiglu_oai(float x, float g) {
  constexpr float kAlpha = 1.702f;
  constexpr float kLimit = 7.0f;
  x = std::fmin(x, kLimit);
  g = std::fmax(std::fmin(g, kLimit), -kLimit);
  return x / (1.0f + std::exp(-x * kAlpha)) * (1.0f + g);
}

}  // namespace gpubroker::sim::ggml
