// Scalar formulas written so that GCC vectorizes the loops that call them
// (`#pragma omp simd`): no libm calls, no branches. Used by the CPU kernels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace tformer::cpu::TFORMER_CPU_ISA {

// Cephes-style expf: range reduction to r in [-ln2/2, ln2/2], degree-6 polynomial,
// scale by 2^n through the exponent bits. About 1 ulp over [-87, 88]. Rounding uses
// the 1.5 * 2^23 trick instead of floorf, which keeps the loops vectorizable.
inline float fast_exp(float x) {
  const bool underflow = x < -87.3365447505531f;  // exp(-inf) and the like are exactly 0
  x = std::min(x, 88.3762626647949f);
  x = std::max(x, -87.3365447505531f);
  const float fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  float r = x - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(fx) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return underflow ? 0.0f : y * scale;
}

// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), odd-symmetric.
inline float fast_erf(float x) {
  const float ax = __builtin_fabsf(x);
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.0f - p * t * fast_exp(-ax * ax);
  return __builtin_copysignf(y, x);
}

inline float fast_tanh(float x) {
  const float cx = std::max(std::min(x, 9.0f), -9.0f);
  const float e = fast_exp(2.0f * cx);
  return (e - 1.0f) / (e + 1.0f);
}

inline float gelu_erf(float x) { return 0.5f * x * (1.0f + fast_erf(x * 0.70710678118654752f)); }

inline float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + fast_tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// x * sigmoid(x), written through tanh: GCC leaves the x / (1 + exp(-x)) form as a
// scalar loop with a data-dependent branch on AVX2 (13 ms vs 1.5 ms per 2M elements).
inline float silu(float x) { return 0.5f * x * (1.0f + fast_tanh(0.5f * x)); }

inline float relu(float x) { return std::max(x, 0.0f); }

}  // namespace tformer::cpu::TFORMER_CPU_ISA
