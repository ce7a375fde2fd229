// Token embedding lookup, scaled, plus position embeddings, in one pass; and its
// backward, a scatter-add into the tables.
#include <algorithm>

#include "../cpu_kernels.h"
#include "tformer/ops/embedding.h"
#include "tformer/errors.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

void embedding(const EmbeddingParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu embedding supports float32 only, got ", dtype_name(p.dtype));
  const float* table = static_cast<const float*>(p.table);
  const float* positions = static_cast<const float*>(p.positions);
  const int64_t d = p.dim;
  if (p.table_scale) {  // int8 table: (float(q) * row scale) * scale, then + position
    const int8_t* q8 = static_cast<const int8_t*>(p.table);
#pragma omp parallel for schedule(static) if (p.rows * d > 16384)
    for (int64_t r = 0; r < p.rows; ++r) {
      float* out = static_cast<float*>(p.out) + r * d;
      const int64_t id = p.ids[r];
      const int8_t* e = q8 + id * d;
      const float row_scale = p.table_scale[id];
      const float* pe = positions && p.position_ids ? positions + static_cast<int64_t>(p.position_ids[r]) * d : nullptr;
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) out[c] = static_cast<float>(e[c]) * row_scale * p.scale + (pe ? pe[c] : 0.0f);
    }
    return;
  }
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

// Rows that share an id add into the same table row, so threads split the columns, not
// the rows: each thread owns a block of columns of every table row and walks all rows
// in order. No atomics, no races, and the sums come out in row order whatever the
// thread count (deterministic, like a serial loop).
void embedding_backward(const EmbeddingBackwardParams& p) {
  if (p.dtype != DType::f32)
    throw_type_error("cpu embedding_backward supports float32 only, got ", dtype_name(p.dtype));
  float* dtable = static_cast<float*>(p.dtable);
  float* dpositions = p.position_ids ? static_cast<float*>(p.dpositions) : nullptr;
  const float* dout = static_cast<const float*>(p.dout);
  const int64_t d = p.dim;
  constexpr int64_t kBlock = 64;  // 256 bytes: whole cache lines per thread
  const int64_t blocks = (d + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (p.rows * d > 16384 && blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kBlock, c1 = std::min(d, c0 + kBlock);
    for (int64_t r = 0; r < p.rows; ++r) {
      const int32_t id = p.ids[r];
      if (id == p.skip_id) continue;
      const float* g = dout + r * d;
      if (dtable) {
        float* t = dtable + static_cast<int64_t>(id) * d;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) t[c] += g[c] * p.scale;
      }
      if (dpositions) {
        float* t = dpositions + static_cast<int64_t>(p.position_ids[r]) * d;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) t[c] += g[c];
      }
    }
  }
}

TFORMER_CPU_OP(embedding);
TFORMER_CPU_OP(embedding_backward);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
