// The AVX-512 VNNI int8 kernel: vpdpbusd on zmm, 4 activation rows x 4 weight rows per
// micro-tile (int8_tiles.h). vpdpbusd multiplies unsigned by signed bytes: the weights go
// in as w + 128 (one xor per weight vector, shared by the 4 rows) and the epilogue takes
// 128 * sum(q) of the activation row back off. Compiled with -mavx512vnni (CMakeLists.txt).
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)  // only built with its ISA flags (x86-64); empty elsewhere

#include <immintrin.h>

#include <cstring>

#include "int8_tiles.h"

namespace tformer::cpu::int8 {
namespace {

struct Avx512Vnni {
  using vec = __m512i;
  static constexpr int kBytes = 64, kMr = 4, kNr = 4;
  static constexpr bool kOffset = true;
  static constexpr int kPanelMr = 12, kPanelVecs = 2;  // 24 accumulators of 32 zmm registers
  static int64_t panel_min_rows(int64_t k) { return max_rows(8, k / 48); }  // measured
  static vec zero() { return _mm512_setzero_si512(); }
  static vec load(const int8_t* p) { return _mm512_loadu_si512(p); }
  static void store(int32_t* p, vec v) { _mm512_storeu_si512(p, v); }
  static vec broadcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  static vec load_tail(const int8_t* p, int64_t len) {  // len < 64
    return _mm512_maskz_loadu_epi8(static_cast<__mmask64>((1ull << len) - 1), p);
  }
  static vec prep(vec w) { return _mm512_xor_si512(w, _mm512_set1_epi8(-128)); }
  // acc += wp (u8) . a (s8), 4 bytes per lane. Inline asm, not _mm512_dpbusd_epi32: GCC 12
  // copies every accumulator through a spare register and the stack around the intrinsic.
  static vec dot(vec acc, vec a, vec wp, vec) {
    asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(wp), "v"(a));
    return acc;
  }

  // [sum a, sum b, sum c, sum d] in each 128-bit lane, from that lane's elements.
  static vec quad(vec a, vec b, vec c, vec d) {
    const vec ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    const vec cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
  }
  // out[v] = the sum of the 16 lanes of v[v], for 16 vectors.
  static void hsum(const vec* v, int32_t* out) {
    const vec u0 = quad(v[0], v[1], v[2], v[3]), u1 = quad(v[4], v[5], v[6], v[7]);
    const vec u2 = quad(v[8], v[9], v[10], v[11]), u3 = quad(v[12], v[13], v[14], v[15]);
    const vec pq = _mm512_add_epi32(_mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
    const vec rs = _mm512_add_epi32(_mm512_shuffle_i32x4(u2, u3, _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_i32x4(u2, u3, _MM_SHUFFLE(3, 1, 3, 1)));
    const vec sum = _mm512_add_epi32(_mm512_shuffle_i32x4(pq, rs, _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_i32x4(pq, rs, _MM_SHUFFLE(3, 1, 3, 1)));
    _mm512_store_si512(out, sum);
  }
};

}  // namespace

void gemm_avx512_vnni(const Int8GemmParams& p, const QuantizedRows& a) { run<Avx512Vnni>(p, a); }

}  // namespace tformer::cpu::int8

#endif
