// Backward of gated_act (out = act(a) * b with x = [a | b] per row, T5 v1.1's gated FFN):
//   da = dy * b * act'(a),  db = dy * act(a),  dx = [da | db]  (written).
#include "../cpu_kernels.h"
#include "tformer/ops/gated_act.h"
#include "activations.h"
#include "tformer/errors.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

template <Activation A>
void gated_rows(const GatedActBackwardParams& p, int64_t r0, int64_t r1) {
  const int64_t n = p.cols;
  for (int64_t r = r0; r < r1; ++r) {
    const float* dy = static_cast<const float*>(p.dy) + r * n;
    const float* a = static_cast<const float*>(p.x) + r * 2 * n;
    const float* b = a + n;
    float* da = static_cast<float*>(p.dx) + r * 2 * n;
    float* db = da + n;
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) {
      da[c] = dy[c] * b[c] * grad<A>(a[c]);
      db[c] = dy[c] * apply<A>(a[c]);
    }
  }
}

template <Activation A>
void run(const GatedActBackwardParams& p) {
  // Blocks of rows big enough to amortise the parallel region on small inputs.
  const int64_t block = p.cols >= 4096 ? 1 : (4096 + p.cols - 1) / p.cols;
  const int64_t nblocks = (p.rows + block - 1) / block;
#pragma omp parallel for schedule(static) if (p.rows * p.cols > 16384)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t r0 = blk * block, r1 = r0 + block < p.rows ? r0 + block : p.rows;
    gated_rows<A>(p, r0, r1);
  }
}

}  // namespace

void gated_act_backward(const GatedActBackwardParams& p) {
  if (p.dtype != DType::f32)
    throw_type_error("cpu gated_act_backward supports float32 only, got ", dtype_name(p.dtype));
  if (p.rows == 0 || p.cols == 0) return;
  switch (p.act) {
    case Activation::none: run<Activation::none>(p); break;
    case Activation::relu: run<Activation::relu>(p); break;
    case Activation::gelu: run<Activation::gelu>(p); break;
    case Activation::gelu_tanh: run<Activation::gelu_tanh>(p); break;
    case Activation::silu: run<Activation::silu>(p); break;
  }
}

TFORMER_CPU_OP(gated_act_backward);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
