// The activations as compile-time choices, apply<A>(z) and its derivative grad<A>(z), for
// the kernels that fuse them (bias_act, gated_act and their backwards). The derivatives
// use the same branch-free fast_exp / fast_erf / fast_tanh so the loops vectorize.
#pragma once

#include "tformer/backend.h"
#include "vec_math.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

template <Activation A>
inline float apply(float v) {
  if constexpr (A == Activation::relu) return relu(v);
  else if constexpr (A == Activation::gelu) return gelu_erf(v);
  else if constexpr (A == Activation::gelu_tanh) return gelu_tanh(v);
  else if constexpr (A == Activation::silu) return silu(v);
  else return v;
}

// relu: torch's threshold_backward passes the gradient where z > 0 (0 at z == 0).
inline float relu_grad(float z) { return z > 0.0f ? 1.0f : 0.0f; }

// d/dz [0.5 z (1 + erf(z / sqrt 2))] = 0.5 (1 + erf(z / sqrt 2)) + z * exp(-z^2 / 2) / sqrt(2 pi).
inline float gelu_erf_grad(float z) {
  const float cdf = 0.5f * (1.0f + fast_erf(z * 0.70710678118654752f));
  return cdf + z * 0.39894228040143268f * fast_exp(-0.5f * z * z);
}

// sigmoid(x) and 1 - sigmoid(x) without cancellation: from e = exp(-|x|), sigmoid(|x|)
// = 1 / (1 + e) and 1 - sigmoid(|x|) = e / (1 + e), swapped for x < 0. The tails matter:
// 1 - s computed as a difference loses everything past z ~ 9 (silu') and 5 (gelu_tanh').
struct Sigmoid {
  float s, one_minus_s;
};
inline Sigmoid sigmoid_pair(float x) {
  const float e = fast_exp(-__builtin_fabsf(x));
  const float inv = 1.0f / (1.0f + e);
  const float big = inv, small = e * inv;
  return x >= 0.0f ? Sigmoid{big, small} : Sigmoid{small, big};
}

// u = k (z + 0.044715 z^3), k = sqrt(2 / pi); 0.5 (1 + tanh u) = sigmoid(2u) and
// 1 - tanh^2 u = 4 sigmoid(2u) (1 - sigmoid(2u)):
// d/dz [0.5 z (1 + tanh u)] = 0.5 (1 + tanh u) + 0.5 z (1 - tanh^2 u) k (1 + 3 * 0.044715 z^2).
inline float gelu_tanh_grad(float z) {
  constexpr float k = 0.7978845608028654f;
  const Sigmoid sg = sigmoid_pair(2.0f * k * (z + 0.044715f * z * z * z));
  const float sech2 = 4.0f * sg.s * sg.one_minus_s;
  return sg.s + 0.5f * z * sech2 * k * (1.0f + 0.134145f * z * z);
}

// d/dz [z s(z)] = s (1 + z (1 - s)).
inline float silu_grad(float z) {
  const Sigmoid sg = sigmoid_pair(z);
  return sg.s * (1.0f + z * sg.one_minus_s);
}

template <Activation A>
inline float grad(float z) {
  if constexpr (A == Activation::relu) return relu_grad(z);
  else if constexpr (A == Activation::gelu) return gelu_erf_grad(z);
  else if constexpr (A == Activation::gelu_tanh) return gelu_tanh_grad(z);
  else if constexpr (A == Activation::silu) return silu_grad(z);
  else return 1.0f;
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA
