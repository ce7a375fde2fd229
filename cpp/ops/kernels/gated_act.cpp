// Gated activation (the gated FFN of T5 v1.1 / flan-T5) and its backward. x (rows, 2 * cols)
// holds the two halves of one fused projection, x = [a | b] per row:
//   forward:  out = act(a) * b
//   backward: da = dy * b * act'(a),  db = dy * act(a),  dx = [da | db]  (written).
#include "../cpu_kernels.h"
#include "tformer/ops/gated_act.h"
#include "activations.h"
#include "tformer/errors.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

template <Activation A>
struct Forward {
  static void rows(const GatedActParams& p, int64_t r0, int64_t r1) {
    const int64_t n = p.cols;
    for (int64_t r = r0; r < r1; ++r) {
      const float* a = static_cast<const float*>(p.x) + r * 2 * n;
      const float* b = a + n;
      float* out = static_cast<float*>(p.out) + r * n;
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) out[c] = apply<A>(a[c]) * b[c];
    }
  }
};

template <Activation A>
struct Backward {
  static void rows(const GatedActBackwardParams& p, int64_t r0, int64_t r1) {
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
};

template <template <Activation> class Kernel, Activation A, class Params>
void run_blocks(const Params& p) {
  // Blocks of rows big enough to amortise the parallel region on small inputs (as bias_act).
  const int64_t block = p.cols >= 4096 ? 1 : (4096 + p.cols - 1) / p.cols;
  const int64_t nblocks = (p.rows + block - 1) / block;
#pragma omp parallel for schedule(static) if (p.rows * p.cols > 16384)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const int64_t r0 = blk * block, r1 = r0 + block < p.rows ? r0 + block : p.rows;
    Kernel<A>::rows(p, r0, r1);
  }
}

// float32 only; picks the compile-time activation once per call.
template <template <Activation> class Kernel, class Params>
void run(const Params& p, const char* op) {
  if (p.dtype != DType::f32) throw_type_error("cpu ", op, " supports float32 only, got ", dtype_name(p.dtype));
  if (p.rows == 0 || p.cols == 0) return;
  switch (p.act) {
    case Activation::none: run_blocks<Kernel, Activation::none>(p); break;
    case Activation::relu: run_blocks<Kernel, Activation::relu>(p); break;
    case Activation::gelu: run_blocks<Kernel, Activation::gelu>(p); break;
    case Activation::gelu_tanh: run_blocks<Kernel, Activation::gelu_tanh>(p); break;
    case Activation::silu: run_blocks<Kernel, Activation::silu>(p); break;
  }
}

}  // namespace

void gated_act(const GatedActParams& p) { run<Forward>(p, "gated_act"); }
void gated_act_backward(const GatedActBackwardParams& p) { run<Backward>(p, "gated_act_backward"); }

TFORMER_CPU_OP(gated_act);
TFORMER_CPU_OP(gated_act_backward);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
