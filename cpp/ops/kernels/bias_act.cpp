// out = act(x + bias) + residual, row by row; and the backward dz = dy * act'(z).
#include "../cpu_kernels.h"
#include "tformer/ops/bias_act.h"
#include "tformer/errors.h"
#include "activations.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

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
// dz = dy * act'(z) (activations.h).
namespace {

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
