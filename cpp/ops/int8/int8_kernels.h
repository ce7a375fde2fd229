// The CPU int8 GEMM kernels behind ops::int8_linear (tformer/ops/int8.h) and how they meet.
//
// int8_gemm.cpp (baseline ISA) is the entry: it picks one kernel by CPUID at first use
// (avx512_vnni > avx_vnni > avx2 > base; TFORMER_CPU_ISA caps it, TFORMER_INT8_KERNEL
// forces one), quantizes the activation rows into a per-thread buffer that only grows
// (quantize_rows_avx2, or the scalar rule for "base"), then runs the kernel. Each SIMD
// kernel lives in its own file compiled with its ISA's flags only (CMakeLists.txt) and
// shares the tiling of int8_tiles.h. Every kernel computes the exact int32 sums and the
// contract's float epilogue, so all of them give the same bits.
#pragma once

#include <cstdint>

#include "tformer/ops/int8.h"

namespace tformer::cpu::int8 {

// Activation rows quantized by the contract's rule: q (m rows, row stride `stride` bytes,
// zero-padded from k to stride, a multiple of 64), scale (m), and sum (m) = the sum of each
// row's q (the VNNI kernels' compensation for feeding weights as unsigned w + 128).
struct QuantizedRows {
  const int8_t* q = nullptr;
  int64_t stride = 0;
  const float* scale = nullptr;
  const int32_t* sum = nullptr;
  // Per-thread room for one packed weight panel (the many-row kernel, int8_tiles.h):
  // panel_bytes each, for omp_get_max_threads() threads.
  int8_t* panels = nullptr;
  int64_t panel_bytes = 0;
  // Rows from which the packed-panel kernel runs; < 0: the kernel's measured default.
  // TFORMER_INT8_PANEL_ROWS sets it (tests and bench/bench_int8_gemm.py run both paths).
  int64_t panel_min_rows = -1;
};

// Widest weight panel of the many-row kernel (columns), for sizing its scratch.
constexpr int64_t kMaxPanelCols = 32;

// Padded row stride of the quantized activations.
inline int64_t padded_k(int64_t k) { return (k + 63) / 64 * 64; }

// The contract's rule, vectorized with AVX2 (bit-identical to the scalar rule: max, one
// float multiply, round-half-even and the clamps are exact operations, in its order).
void quantize_rows_avx2(const Int8GemmParams& p, int8_t* q, int64_t stride, float* scale, int32_t* sum);

using KernelFn = void (*)(const Int8GemmParams& p, const QuantizedRows& a);
void gemm_avx512_vnni(const Int8GemmParams& p, const QuantizedRows& a);  // vpdpbusd zmm
void gemm_avx_vnni(const Int8GemmParams& p, const QuantizedRows& a);     // vpdpbusd ymm (VEX)
void gemm_avx2(const Int8GemmParams& p, const QuantizedRows& a);         // vpmaddubsw + vpmaddwd

}  // namespace tformer::cpu::int8
