// The activations of backend.h's Activation on the device, fp32, and their derivatives:
// shared by bias_act.cu (bias_act and its backward) and gated_act.cu (gated FFNs).
#pragma once

#include <cmath>

#include "tformer/backend.h"

namespace tformer::cuda {

// sigmoid(x) and 1 - sigmoid(x) without cancellation (as the CPU kernel): from
// e = exp(-|x|), sigmoid(|x|) = 1 / (1 + e) and 1 - sigmoid(|x|) = e / (1 + e).
struct Sigmoid {
  float s, one_minus_s;
};
__device__ __forceinline__ Sigmoid sigmoid_pair(float x) {
  const float e = expf(-fabsf(x));
  const float inv = 1.0f / (1.0f + e);
  return x >= 0.0f ? Sigmoid{inv, e * inv} : Sigmoid{e * inv, inv};
}

template <Activation A>
__device__ __forceinline__ float activate(float x) {
  if constexpr (A == Activation::relu) {
    return fmaxf(x, 0.0f);
  } else if constexpr (A == Activation::gelu) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));  // x * Phi(x)
  } else if constexpr (A == Activation::gelu_tanh) {
    // Hendrycks & Gimpel (2016), the tanh approximation used by GPT-2 and BERT.
    const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(inner));
  } else if constexpr (A == Activation::silu) {
    return x / (1.0f + expf(-x));
  } else {
    return x;
  }
}

template <Activation A>
__device__ __forceinline__ float activation_grad(float z) {
  if constexpr (A == Activation::relu) {
    return z > 0.0f ? 1.0f : 0.0f;  // torch's threshold_backward: 0 at z == 0
  } else if constexpr (A == Activation::gelu) {
    // d/dz [z Phi(z)] = Phi(z) + z phi(z).
    return 0.5f * (1.0f + erff(z * 0.70710678118654752f)) + z * 0.39894228040143268f * expf(-0.5f * z * z);
  } else if constexpr (A == Activation::gelu_tanh) {
    // 0.5 (1 + tanh u) = sigmoid(2u), 1 - tanh^2 u = 4 sigmoid(2u) (1 - sigmoid(2u)).
    constexpr float k = 0.7978845608028654f;
    const Sigmoid sg = sigmoid_pair(2.0f * k * (z + 0.044715f * z * z * z));
    return sg.s + 0.5f * z * (4.0f * sg.s * sg.one_minus_s) * k * (1.0f + 0.134145f * z * z);
  } else if constexpr (A == Activation::silu) {
    const Sigmoid sg = sigmoid_pair(z);  // d/dz [z s(z)] = s (1 + z (1 - s))
    return sg.s * (1.0f + z * sg.one_minus_s);
  } else {
    return 1.0f;
  }
}

}  // namespace tformer::cuda
