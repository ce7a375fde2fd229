// The AVX-VNNI int8 kernel (AVX2 machines with VNNI: Alder Lake and later, Zen 5): VEX
// vpdpbusd on ymm, 2 activation rows x 4 weight rows per micro-tile (int8_tiles.h), weights
// fed as unsigned w + 128 as in int8_avx512_vnni.cpp. Compiled with -mavxvnni -mavx2 only.
#include <immintrin.h>

#include "int8_tiles.h"
#include "int8_ymm.h"

#if defined(__AVXVNNI__)

namespace tformer::cpu::int8 {
namespace {

struct AvxVnni : YmmBase {
  static constexpr bool kOffset = true;
  static vec prep(vec w) { return _mm256_xor_si256(w, _mm256_set1_epi8(-128)); }
  static vec dot(vec acc, vec a, vec wp, vec) { return _mm256_dpbusd_avx_epi32(acc, wp, a); }
};

}  // namespace

void gemm_avx_vnni(const Int8GemmParams& p, const QuantizedRows& a) { run_tiles<AvxVnni>(p, a); }

}  // namespace tformer::cpu::int8

#endif
