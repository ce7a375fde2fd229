// Inverted dropout with a counter-based mask: element i draws
//   u = top 24 bits of mix64(key + (offset + i + 1) * golden) / 2^24,  key = mix64(seed)
// (SplitMix64's output function, Steele et al. 2014, on the counter), and is kept when
// u >= p. The draw is a pure function of (seed, offset + i): no state, no dependence on
// threads or chunking, and the backward regenerates the same mask from seed and offset.
#include <cstring>

#include "../cpu_kernels.h"
#include "tformer/errors.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

void dropout(const DropoutParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu dropout supports float32 only, got ", dtype_name(p.dtype));
  float* out = static_cast<float*>(p.out);
  const float* x = static_cast<const float*>(p.x);
  if (p.p == 0.0f) {  // the identity
    if (out != x) std::memcpy(out, x, static_cast<size_t>(p.n) * sizeof(float));
    return;
  }
  const uint64_t key = mix64(p.seed + kGolden);
  const float scale = p.p < 1.0f ? 1.0f / (1.0f - p.p) : 0.0f;  // p = 1 drops everything
  const float threshold = p.p;
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (p.n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (p.n > 32768)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t i0 = ch * kChunk, i1 = i0 + kChunk < p.n ? i0 + kChunk : p.n;
    const uint64_t base = key + (p.offset + static_cast<uint64_t>(i0) + 1) * kGolden;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      const uint64_t h = mix64(base + static_cast<uint64_t>(i - i0) * kGolden);
      const float u = static_cast<float>(static_cast<int32_t>(h >> 40)) * (1.0f / 16777216.0f);
      out[i] = u >= threshold ? x[i] * scale : 0.0f;
    }
  }
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA
