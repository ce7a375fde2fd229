// The vector operations of the row-invariant GEMM (gemm_rows.cpp), one set per build:
// AVX-512 (16 lanes), AVX2+FMA (8 lanes), and a portable one (8 lanes of plain floats,
// a multiply then an add: gemm_rows.cpp is compiled with -ffp-contract=off, so the
// compiler fuses nothing and every instance rounds alike).
//
// hsum is THE horizontal-sum tree of a build: lane l adds lane l + L/2, then l + L/4,
// ..., down to lane 0. Every output element of a build goes through it.
#pragma once

#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace tformer::cpu::TFORMER_CPU_ISA {

#if defined(__AVX512F__)
struct RowSimd {
  using vec = __m512;
  static constexpr int kLanes = 16;
  // Weight rows per micro-tile for 1..4 rows of A: MR * NR accumulators + MR + 1 <= 32;
  // MR * NR = kBatch where the sums can be taken together (hsum_batch).
  static constexpr int kNr[5] = {0, 16, 8, 8, 4};
  static constexpr int64_t kPanel = 48;  // weight rows per thread task: a multiple of every kNr
  static constexpr int kBatch = 16;
  static vec zero() { return _mm512_setzero_ps(); }
  static vec load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static vec load_tail(const float* p, int64_t n) {  // n < kLanes floats, the rest 0
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
  }
  static vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(vec v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
  // out[f] = hsum(x[f]) for 16 accumulators, bit for bit (the same pairs of lanes added at
  // each level: l + 8, l + 4, l + 2, l + 1), a transposing tree: 15 adds and 30 shuffles
  // where 16 hsum calls take ~100 instructions.
  static void hsum_batch(const vec* x, float* out) {
    // The tree leaves lane 4c + d holding input 4d + c: feed it x transposed (4 x 4).
    vec y[16];
    for (int c = 0; c < 4; ++c)
      for (int d = 0; d < 4; ++d) y[4 * d + c] = x[4 * c + d];
    vec z[8], w[4], r[2];
    for (int i = 0; i < 8; ++i)  // [a.lo256, b.lo256] + [a.hi256, b.hi256]: lanes l, l + 8
      z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0x44),
                           _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; ++i)  // 128-bit chunks 0 + 1 and 2 + 3 of each: lanes l, l + 4
      w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(z[2 * i], z[2 * i + 1], 0x88),
                           _mm512_shuffle_f32x4(z[2 * i], z[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; ++i)  // within each chunk: lanes l, l + 2
      r[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(2, 0, 2, 0)),  // l, l + 1
                                        _mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(3, 1, 3, 1))));
  }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct RowSimd {
  using vec = __m256;
  static constexpr int kLanes = 8;
  // 16 registers: MR * NR accumulators + MR rows of A (the weights as memory operands).
  static constexpr int kNr[5] = {0, 8, 6, 4, 3};
  static constexpr int64_t kPanel = 24;
  static constexpr int kBatch = 0;  // no hsum_batch: at 8 lanes the sums cost little
  static void hsum_batch(const vec*, float*) {}
  static vec zero() { return _mm256_setzero_ps(); }
  static vec load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static vec load_tail(const float* p, int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lane));
  }
  static vec fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(vec v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
};
#else
struct RowSimd {
  static constexpr int kLanes = 8;
  struct vec {
    float x[kLanes];
  };
  static constexpr int kNr[5] = {0, 8, 4, 4, 2};
  static constexpr int64_t kPanel = 24;
  static constexpr int kBatch = 0;
  static void hsum_batch(const vec*, float*) {}
  static vec zero() { return vec{}; }
  static vec load(const float* p) {
    vec v;
    for (int l = 0; l < kLanes; ++l) v.x[l] = p[l];
    return v;
  }
  static void store(float* p, vec v) {
    for (int l = 0; l < kLanes; ++l) p[l] = v.x[l];
  }
  static vec load_tail(const float* p, int64_t n) {
    vec v{};
    for (int64_t l = 0; l < n; ++l) v.x[l] = p[l];
    return v;
  }
  static vec fma(vec a, vec b, vec c) {
    for (int l = 0; l < kLanes; ++l) c.x[l] = c.x[l] + a.x[l] * b.x[l];
    return c;
  }
  static float hsum(vec v) {
    float h[4], q[2];
    for (int l = 0; l < 4; ++l) h[l] = v.x[l] + v.x[l + 4];
    for (int l = 0; l < 2; ++l) q[l] = h[l] + h[l + 2];
    return q[0] + q[1];
  }
};
#endif

}  // namespace tformer::cpu::TFORMER_CPU_ISA
