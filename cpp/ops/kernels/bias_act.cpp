// out = act(x + bias) + residual, row by row; and the backward dz = dy * act'(z).
#include "../cpu_kernels.h"
#include "tformer/ops/bias_act.h"
#include "tformer/errors.h"
#include "vec_math.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

template <Activation A>
inline float apply(float v) {
  if constexpr (A == Activation::relu) return relu(v);
  else if constexpr (A == Activation::gelu) return gelu_erf(v);
  else if constexpr (A == Activation::gelu_tanh) return gelu_tanh(v);
  else if constexpr (A == Activation::silu) return silu(v);
  else return v;
}

template <Activation A>
inline void row_kernel(float* out, const float* x, const float* bias, const float* res, int64_t n) {
  if (bias && res) {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = apply<A>(x[c] + bias[c]) + res[c];
  } else if (bias) {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = apply<A>(x[c] + bias[c]);
  } else if (res) {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = apply<A>(x[c]) + res[c];
  } else {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = apply<A>(x[c]);
  }
}


void bias_act_rows(const BiasActParams& p, int64_t r0, int64_t r1) {
  const float* bias = static_cast<const float*>(p.bias);
  for (int64_t r = r0; r < r1; ++r) {
    float* out = static_cast<float*>(p.out) + r * p.cols;
    const float* x = static_cast<const float*>(p.x) + r * p.cols;
    const float* res = p.residual ? static_cast<const float*>(p.residual) + r * p.cols : nullptr;
    switch (p.act) {
      case Activation::none: row_kernel<Activation::none>(out, x, bias, res, p.cols); break;
      case Activation::relu: row_kernel<Activation::relu>(out, x, bias, res, p.cols); break;
      case Activation::gelu: row_kernel<Activation::gelu>(out, x, bias, res, p.cols); break;
      case Activation::gelu_tanh: row_kernel<Activation::gelu_tanh>(out, x, bias, res, p.cols); break;
      case Activation::silu: row_kernel<Activation::silu>(out, x, bias, res, p.cols); break;
    }
  }
}

}  // namespace

void bias_act(const BiasActParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu bias_act supports float32 only, got ", dtype_name(p.dtype));
  // Blocks of rows big enough to amortise the parallel region on small inputs.
  const int64_t block = p.cols >= 4096 ? 1 : (4096 + p.cols - 1) / (p.cols ? p.cols : 1);
  const int64_t nblocks = (p.rows + block - 1) / block;
#pragma omp parallel for schedule(static) if (p.rows * p.cols > 16384)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t r0 = b * block;
    const int64_t r1 = r0 + block < p.rows ? r0 + block : p.rows;
    bias_act_rows(p, r0, r1);
  }
}


// ---------------------------------------------------------------- backward
// dz = dy * act'(z): the derivatives of the activations above, written with the same
// branch-free fast_exp / fast_erf / fast_tanh so the loops vectorize.
namespace {

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

template <Activation A>
void run(float* dz, const float* dy, const float* z, int64_t n) {
  constexpr int64_t kChunk = 4096;  // elements per parallel work item
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t i0 = ch * kChunk, i1 = i0 + kChunk < n ? i0 + kChunk : n;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) dz[i] = dy[i] * grad<A>(z[i]);
  }
}

}  // namespace

void bias_act_backward(const BiasActBackwardParams& p) {
  if (p.dtype != DType::f32)
    throw_type_error("cpu bias_act_backward supports float32 only, got ", dtype_name(p.dtype));
  float* dz = static_cast<float*>(p.dz);
  const float* dy = static_cast<const float*>(p.dy);
  const float* z = static_cast<const float*>(p.z);
  switch (p.act) {
    case Activation::none: run<Activation::none>(dz, dy, z, p.n); break;
    case Activation::relu: run<Activation::relu>(dz, dy, z, p.n); break;
    case Activation::gelu: run<Activation::gelu>(dz, dy, z, p.n); break;
    case Activation::gelu_tanh: run<Activation::gelu_tanh>(dz, dy, z, p.n); break;
    case Activation::silu: run<Activation::silu>(dz, dy, z, p.n); break;
  }
}

TFORMER_CPU_OP(bias_act);
TFORMER_CPU_OP(bias_act_backward);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
