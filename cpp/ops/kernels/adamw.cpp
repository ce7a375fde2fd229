// One AdamW step, element-wise, in torch.optim.AdamW's order of operations (its
// single-tensor path, torch/optim/adam.py, decoupled weight decay): the decay first
// (param *= 1 - lr * wd), then the moments (m as lerp(m, g, 1 - beta1)), then
// param += -step_size * m / (sqrt(v) / sqrt(bc2) + eps). The scalar factors are computed
// in double and rounded to float once, as torch does with its Python floats.
//
// Written with explicit vectors: GCC will not vectorize a loop calling sqrtf unless the
// whole build has -fno-math-errno (the errno path is a branch), and the update is a
// sqrt and two divisions per element, too slow scalar (2x on 2M parameters).
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <cmath>

#include "../cpu_kernels.h"
#include "tformer/ops/adamw.h"
#include "tformer/adamw_factors.h"
#include "tformer/errors.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int64_t kLanes = 16;
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
// The masked form: _mm512_sqrt_ps trips a false -Wmaybe-uninitialized in GCC 12.
inline Vec vsqrt(Vec v) { return _mm512_mask_sqrt_ps(v, static_cast<__mmask16>(0xFFFF), v); }
inline Vec vset(float x) { return _mm512_set1_ps(x); }
#elif defined(__AVX__)
using Vec = __m256;
constexpr int64_t kLanes = 8;
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec vsqrt(Vec v) { return _mm256_sqrt_ps(v); }
inline Vec vset(float x) { return _mm256_set1_ps(x); }
#elif defined(__SSE2__)
using Vec = __m128;
constexpr int64_t kLanes = 4;
inline Vec vload(const float* p) { return _mm_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm_storeu_ps(p, v); }
inline Vec vsqrt(Vec v) { return _mm_sqrt_ps(v); }
inline Vec vset(float x) { return _mm_set1_ps(x); }
#else
using Vec = float;
constexpr int64_t kLanes = 1;
inline Vec vload(const float* p) { return *p; }
inline void vstore(float* p, Vec v) { *p = v; }
inline Vec vsqrt(Vec v) { return std::sqrt(v); }
inline Vec vset(float x) { return x; }
#endif

// The update of one element (float) or one vector of them (GCC's vector types take the
// same operators), so both paths round the same way.
template <typename T, typename Sqrt>
inline void update(T& param, T& m, T& v, T grad, const AdamWFactors& f, Sqrt sqrt) {
  auto c = [](float x) { return T{} + x; };  // broadcast (a no-op for float)
  const T g = grad * c(f.gs);
  const T w = f.decayed ? param * c(f.decay) : param;
  // torch's lerp: self + w (end - self) for |w| < 0.5, else end - (end - self)(1 - w).
  m = f.small_w1 ? m + c(f.w1) * (g - m) : g - (g - m) * c(f.one_minus_w1);
  v = v * c(f.b2) + c(f.w2) * g * g;
  param = w + c(-f.step_size) * m / (sqrt(v) / c(f.bc2_sqrt) + c(f.eps));
}

void adamw_range(const AdamWParams& p, const AdamWFactors& f, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + kLanes <= i1; i += kLanes) {
    Vec param = vload(p.param + i), m = vload(p.m + i), v = vload(p.v + i);
    update(param, m, v, vload(p.grad + i), f, [](Vec x) { return vsqrt(x); });
    vstore(p.param + i, param);
    vstore(p.m + i, m);
    vstore(p.v + i, v);
  }
  for (; i < i1; ++i) update(p.param[i], p.m[i], p.v[i], p.grad[i], f, [](float x) { return std::sqrt(x); });
}

}  // namespace

void adamw(const AdamWParams& p) {
  // CPU models are float32: there is no half-precision copy to keep (train_ops.cpp says so first).
  if (p.param_half != nullptr) throw_value_error("cpu adamw: param_half (mixed precision) is CUDA only");
  const AdamWFactors f = adamw_factors(p);
  constexpr int64_t kChunk = 8192;
  const int64_t chunks = (p.n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (p.n > 32768)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t i0 = ch * kChunk;
    adamw_range(p, f, i0, i0 + kChunk < p.n ? i0 + kChunk : p.n);
  }
}

TFORMER_CPU_OP(adamw);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
