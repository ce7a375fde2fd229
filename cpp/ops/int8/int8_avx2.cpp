// The plain AVX2 int8 kernel (no VNNI of any kind: what an AVX2-only machine runs) and the
// AVX2 activation quantizer every SIMD kernel uses.
//
// vpmaddubsw multiplies unsigned by signed bytes and sums pairs into saturating int16:
// fed |w| and sign(a, w) (a negated where w < 0), each pair is |w0 a0 + w1 a1| <=
// 2 * 127 * 127 = 32258 < 32767 because the rule never produces -128, so nothing
// saturates and vpmaddwd (x 1) widens the pairs to exact int32 sums.
// Compiled with -mavx2 only (CMakeLists.txt).
#if defined(__AVX2__)  // only built with its ISA flags (x86-64); empty elsewhere

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "int8_tiles.h"
#include "int8_ymm.h"

namespace tformer::cpu::int8 {
namespace {

struct Avx2 : YmmBase {
  static constexpr bool kOffset = false;
  static constexpr int kPanelMr = 4, kPanelVecs = 2;  // 8 accumulators + 2 x 2 weight vectors
  static int64_t panel_min_rows(int64_t k) { return max_rows(16, k / 32); }  // measured
  static vec prep(vec w) { return _mm256_abs_epi8(w); }
  static vec dot(vec acc, vec a, vec wp, vec w) {
    const vec pairs = _mm256_maddubs_epi16(wp, _mm256_sign_epi8(a, w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
};

// The comparisons of std::max / std::min (the scalar rule's): NaN compares false.
inline float max_of(float a, float b) { return (a < b) ? b : a; }
inline float min_of(float a, float b) { return (b < a) ? b : a; }

}  // namespace

void gemm_avx2(const Int8GemmParams& p, const QuantizedRows& a) { run<Avx2>(p, a); }

// The rule of tformer/ops/int8.h, 8 floats at a time. _mm256_max_ps(x, m) is
// (x > m) ? x : m, the scalar std::max(m, x) (a NaN never enters the max); the clamps
// and the multiply are the scalar's, rounding is half to even like nearbyint.
void quantize_rows_avx2(const Int8GemmParams& p, int8_t* q, int64_t stride, float* scale, int32_t* sum) {
  const int64_t k = p.k;
#pragma omp parallel for schedule(static) if (p.m * k > (1 << 16))
  for (int64_t i = 0; i < p.m; ++i) {
    const float* row = p.a + i * p.lda;
    int8_t* out = q + i * stride;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 vmax = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= k; c += 8) vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(row + c), abs_mask), vmax);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, vmax);
    float amax = 0.0f;
    for (float l : lanes) amax = max_of(amax, l);
    for (; c < k; ++c) amax = max_of(amax, std::fabs(row[c]));
    if (!(amax > 0.0f)) {  // zero row (or NaN: garbage in, no crash)
      std::memset(out, 0, static_cast<size_t>(stride));
      scale[i] = 0.0f;
      sum[i] = 0;
      continue;
    }
    const float inv = 127.0f / amax;
    const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    __m256i vsum = _mm256_setzero_si256();
    for (c = 0; c + 8 <= k; c += 8) {
      __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(row + c), vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      const __m256i i32 = _mm256_cvtps_epi32(v);
      vsum = _mm256_add_epi32(vsum, i32);
      const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + c), _mm_packs_epi16(i16, i16));
    }
    alignas(32) int32_t parts[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(parts), vsum);
    int32_t s = 0;
    for (int32_t part : parts) s += part;
    for (; c < k; ++c) {
      const float v = min_of(127.0f, max_of(-127.0f, std::nearbyint(row[c] * inv)));
      out[c] = static_cast<int8_t>(v);
      s += static_cast<int32_t>(v);
    }
    std::memset(out + k, 0, static_cast<size_t>(stride - k));
    scale[i] = amax / 127.0f;
    sum[i] = s;
  }
}

}  // namespace tformer::cpu::int8

#endif
