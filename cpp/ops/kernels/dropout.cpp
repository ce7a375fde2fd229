// Inverted dropout with the counter-based mask of tformer/random.h (the CUDA kernel draws
// the same numbers): element i is kept when rng::dropout_draw(key, offset + i) >= p, key =
// rng::dropout_key(seed). The draw is a pure function of (seed, offset + i): no state, no
// dependence on threads or chunking, and the backward regenerates the same mask from seed
// and offset.
#include <cstring>

#include "../cpu_kernels.h"
#include "tformer/ops/dropout.h"
#include "tformer/errors.h"
#include "tformer/random.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

void dropout(const DropoutParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu dropout supports float32 only, got ", dtype_name(p.dtype));
  float* out = static_cast<float*>(p.out);
  const float* x = static_cast<const float*>(p.x);
  if (p.p == 0.0f) {  // the identity
    if (out != x) std::memcpy(out, x, static_cast<size_t>(p.n) * sizeof(float));
    return;
  }
  const uint64_t key = rng::dropout_key(p.seed);
  const float scale = p.p < 1.0f ? 1.0f / (1.0f - p.p) : 0.0f;  // p = 1 drops everything
  const float threshold = p.p;
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (p.n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (p.n > 32768)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t i0 = ch * kChunk, i1 = i0 + kChunk < p.n ? i0 + kChunk : p.n;
    // dropout_draw(key, offset + i) hashes key + (offset + i) * golden: the chunk's start is
    // folded into the key once, which leaves one multiply-add per element in the vector loop.
    const uint64_t chunk_key = key + (p.offset + static_cast<uint64_t>(i0)) * rng::kGolden64;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      const float u = rng::dropout_draw(chunk_key, static_cast<uint64_t>(i - i0));
      out[i] = u >= threshold ? x[i] * scale : 0.0f;
    }
  }
}

TFORMER_CPU_OP(dropout);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
