// Helpers of the two 256-bit int8 kernels (AVX-VNNI, AVX2): loads and the horizontal sum.
// Included only by files compiled with -mavx2; an anonymous namespace keeps each copy apart.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace tformer::cpu::int8 {
namespace {

struct YmmBase {
  using vec = __m256i;
  static constexpr int kBytes = 32, kMr = 2, kNr = 4;  // 8 accumulators of 16 ymm registers
  static vec zero() { return _mm256_setzero_si256(); }
  static vec load(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static void store(int32_t* p, vec v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  static vec broadcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  }
  static vec load_tail(const int8_t* p, int64_t len) {  // len < 32: never read past the row
    alignas(32) int8_t buf[32] = {};
    std::memcpy(buf, p, static_cast<size_t>(len));
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
  }
  static vec quad(vec a, vec b, vec c, vec d) {
    const vec ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    const vec cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
  }
  // out[v] = the sum of the 8 lanes of v[v], for 8 vectors.
  static void hsum(const vec* v, int32_t* out) {
    const vec u0 = quad(v[0], v[1], v[2], v[3]), u1 = quad(v[4], v[5], v[6], v[7]);
    const vec sum = _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), sum);
  }
};

}  // namespace
}  // namespace tformer::cpu::int8
