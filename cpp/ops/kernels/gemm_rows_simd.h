// The vector operations of the row-invariant GEMM (gemm_rows*.cpp), one set per build:
// AVX-512 (16 lanes), AVX2+FMA (8 lanes), and a portable one (8 lanes of plain floats,
// a multiply then an add: the gemm_rows files are compiled with -ffp-contract=off, so the
// compiler fuses nothing and every instance rounds alike).
//
// Both kernels compute each element of C with the one arithmetic of gemm_rows.h: a
// sequential chain of fma over k from 0. The packed kernel (rows of A in lanes) uses
// broadcast; the narrow one (columns of C in lanes) uses transpose and the tail loads.
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
  static constexpr int kMaxV = 4;                          // packed kernel: 4 vectors of A = 64 rows per tile
  static constexpr int kNr[kMaxV + 1] = {0, 12, 12, 8, 6};  // weight rows per panel: V * NR <= 24 accumulators
  static vec zero() { return _mm512_setzero_ps(); }
  static vec load(const float* p) { return _mm512_loadu_ps(p); }
  static vec broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static __mmask16 mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static vec load_tail(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(mask(n), p); }  // n < kLanes, rest 0
  // r[i] (lane l) = input r[l] (lane i): 16 x 16 in registers, 64 shuffles. (Gathering
  // 128-bit pieces of 4 rows as they load, with inserts, masked broadcasts or blends, to
  // save shuffles measured slower on Zen 4.)
  static void transpose(vec* r) {
    vec t[16], u[16];
    for (int i = 0; i < 8; ++i) {  // pairs of rows interleaved
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; ++g) {  // u[4g + q], 128-bit chunk c: rows 4g..4g+3 of column 4c + q
      u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
      u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
      u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
      u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int q = 0; q < 4; ++q) {  // chunk c of u[4g + q] to chunk g of column 4c + q
      const vec a02 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88), a13 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
      const vec b02 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
      const vec b13 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
      r[q] = _mm512_shuffle_f32x4(a02, b02, 0x88);
      r[8 + q] = _mm512_shuffle_f32x4(a02, b02, 0xDD);
      r[4 + q] = _mm512_shuffle_f32x4(a13, b13, 0x88);
      r[12 + q] = _mm512_shuffle_f32x4(a13, b13, 0xDD);
    }
  }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct RowSimd {
  using vec = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kMaxV = 3;  // 16 registers: V * NR accumulators + V + 1
  static constexpr int kNr[kMaxV + 1] = {0, 12, 6, 4};
  static vec zero() { return _mm256_setzero_ps(); }
  static vec load(const float* p) { return _mm256_loadu_ps(p); }
  static vec broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static vec fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static __m256i mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static vec load_tail(const float* p, int64_t n) { return _mm256_maskload_ps(p, mask(n)); }
  // t[q] lane r = w[r][q], q < 8: rows i and 4 + i in the two halves as they load, then a
  // 4 x 4 transpose within the halves (16 shuffles where transpose() takes 24).
  static void load_transposed(const float* const* w, vec* t) {
    for (int c = 0; c < 2; ++c) {
      vec x[4];
      for (int i = 0; i < 4; ++i)
        x[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(w[i] + 4 * c)), _mm_loadu_ps(w[4 + i] + 4 * c), 1);
      const vec t0 = _mm256_unpacklo_ps(x[0], x[1]), t1 = _mm256_unpackhi_ps(x[0], x[1]);
      const vec t2 = _mm256_unpacklo_ps(x[2], x[3]), t3 = _mm256_unpackhi_ps(x[2], x[3]);
      t[4 * c + 0] = _mm256_shuffle_ps(t0, t2, 0x44);
      t[4 * c + 1] = _mm256_shuffle_ps(t0, t2, 0xEE);
      t[4 * c + 2] = _mm256_shuffle_ps(t1, t3, 0x44);
      t[4 * c + 3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    }
  }
  // 8 x 8 in registers, 24 shuffles (the k tail).
  static void transpose(vec* r) {
    vec t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 2; ++g) {  // u[4g + q], 128-bit half h: rows 4g..4g+3 of column 4h + q
      u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
      u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
      u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
      u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int q = 0; q < 4; ++q) {
      r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
      r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
  }
};
#else
struct RowSimd {
  static constexpr int kLanes = 8;
  struct vec {
    float x[kLanes];
  };
  static constexpr int kMaxV = 4;
  static constexpr int kNr[kMaxV + 1] = {0, 8, 4, 4, 2};
  static vec zero() { return vec{}; }
  static vec load(const float* p) {
    vec v;
    for (int l = 0; l < kLanes; ++l) v.x[l] = p[l];
    return v;
  }
  static vec broadcast(const float* p) {
    vec v;
    for (int l = 0; l < kLanes; ++l) v.x[l] = *p;
    return v;
  }
  static vec fma(vec a, vec b, vec c) {  // a multiply, then an add (no fma instruction in this build)
    for (int l = 0; l < kLanes; ++l) c.x[l] = c.x[l] + a.x[l] * b.x[l];
    return c;
  }
  static void store(float* p, vec v) {
    for (int l = 0; l < kLanes; ++l) p[l] = v.x[l];
  }
};
#endif

}  // namespace tformer::cpu::TFORMER_CPU_ISA
