// Gated activation (the gated FFN of T5 v1.1 / flan-T5): x (rows, 2 * cols) holds the two
// halves of one fused projection; out[r, c] = act(x[r, c]) * x[r, cols + c].
#include "../cpu_kernels.h"
#include "tformer/ops/gated_act.h"
#include "activations.h"
#include "tformer/errors.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

template <Activation A>
void gated_rows(const GatedActParams& p, int64_t r0, int64_t r1) {
  const int64_t n = p.cols;
  for (int64_t r = r0; r < r1; ++r) {
    const float* a = static_cast<const float*>(p.x) + r * 2 * n;
    const float* g = a + n;
    float* out = static_cast<float*>(p.out) + r * n;
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = apply<A>(a[c]) * g[c];
  }
}

template <Activation A>
void run(const GatedActParams& p) {
  // Blocks of rows big enough to amortise the parallel region on small inputs (as bias_act).
  const int64_t block = p.cols >= 4096 ? 1 : (4096 + p.cols - 1) / p.cols;
  const int64_t nblocks = (p.rows + block - 1) / block;
#pragma omp parallel for schedule(static) if (p.rows * p.cols > 16384)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t r0 = b * block;
    gated_rows<A>(p, r0, r0 + block < p.rows ? r0 + block : p.rows);
  }
}

}  // namespace

void gated_act(const GatedActParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu gated_act supports float32 only, got ", dtype_name(p.dtype));
  if (p.rows == 0 || p.cols == 0) return;
  switch (p.act) {
    case Activation::none: run<Activation::none>(p); break;
    case Activation::relu: run<Activation::relu>(p); break;
    case Activation::gelu: run<Activation::gelu>(p); break;
    case Activation::gelu_tanh: run<Activation::gelu_tanh>(p); break;
    case Activation::silu: run<Activation::silu>(p); break;
  }
}

TFORMER_CPU_OP(gated_act);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
