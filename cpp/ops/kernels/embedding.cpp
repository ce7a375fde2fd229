// Token embedding lookup, scaled, plus position embeddings, in one pass.
#include "../cpu_kernels.h"
#include "tformer/errors.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

void embedding(const EmbeddingParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu embedding supports float32 only, got ", dtype_name(p.dtype));
  const float* table = static_cast<const float*>(p.table);
  const float* positions = static_cast<const float*>(p.positions);
  const int64_t d = p.dim;
#pragma omp parallel for schedule(static) if (p.rows * d > 16384)
  for (int64_t r = 0; r < p.rows; ++r) {
    float* out = static_cast<float*>(p.out) + r * d;
    const float* e = table + static_cast<int64_t>(p.ids[r]) * d;
    if (positions && p.position_ids) {
      const float* pe = positions + static_cast<int64_t>(p.position_ids[r]) * d;
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) out[c] = e[c] * p.scale + pe[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) out[c] = e[c] * p.scale;
    }
  }
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA
