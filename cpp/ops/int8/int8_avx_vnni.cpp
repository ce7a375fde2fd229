// The AVX-VNNI int8 kernel (AVX2 machines with VNNI: Alder Lake and later, Zen 5): VEX
// vpdpbusd on ymm, 2 activation rows x 4 weight rows per micro-tile (int8_tiles.h), weights
// fed as unsigned w + 128 as in int8_avx512_vnni.cpp. Compiled with -mavxvnni -mavx2 only.
#if defined(__AVXVNNI__)  // only built with its ISA flags (x86-64); empty elsewhere

#include <immintrin.h>

#include "int8_tiles.h"
#include "int8_ymm.h"

namespace tformer::cpu::int8 {
namespace {

struct AvxVnni : YmmBase {
  static constexpr bool kOffset = true;
  static constexpr int kPanelMr = 6, kPanelVecs = 2;  // 12 accumulators of 16 ymm registers
  static int64_t panel_min_rows(int64_t k) { return max_rows(8, k / 96); }  // measured
  static vec prep(vec w) { return _mm256_xor_si256(w, _mm256_set1_epi8(-128)); }
  // acc += wp (u8) . a (s8); inline asm for the reason given in int8_avx512_vnni.cpp.
  static vec dot(vec acc, vec a, vec wp, vec) {
    asm("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(wp), "x"(a));
    return acc;
  }
};

}  // namespace

void gemm_avx_vnni(const Int8GemmParams& p, const QuantizedRows& a) { run<AvxVnni>(p, a); }

}  // namespace tformer::cpu::int8

#endif
