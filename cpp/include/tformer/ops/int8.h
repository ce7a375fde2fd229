// Op family int8: weight matrices stored as int8 with one float scale per row, and the GEMM
// that multiplies float32 activations by them, quantizing each activation row on entry
// (the scheme of CTranslate2's int8_float32; docs/QUANTIZATION.md).
//
// The quantization rule, one definition for weights, activations, kernels and tests:
//   amax[r]  = max over c of |x[r][c]|
//   scale[r] = amax[r] / 127                          (0 for an all-zero row)
//   q[r][c]  = nearbyint(x[r][c] * (127 / amax[r]))   (float32 product, rounding half to
//              even, clamped to [-127, 127]; 0 for an all-zero row)
//   x[r][c] ~= q[r][c] * scale[r]
// -128 is never produced: the range is symmetric, and |q| <= 127 is what keeps AVX2's
// vpmaddubsw (u8 x s8 pairs summed into int16) exact.
#pragma once

#include <cstdint>
#include <string>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// C (m, n) = alpha * dequant(A) @ dequant(B)^T + bias, float32 out.
// A is float32 (m, k) with row stride lda, quantized per row on entry by the rule above
// (a_q, a_scale). B is an int8 Linear weight (n, k), row stride ldb, with b_scale (n).
// acc[i][j] = sum over k of a_q[i][.] * b_q[j][.], exact in int32 (k <= 131072).
// The epilogue is float32 arithmetic in exactly this order, with no fused multiply-add:
//   s = float(acc) * (a_scale[i] * b_scale[j]);  s = alpha * s;  if (bias) s = s + bias[j];
//   c[i][j] = s
// So a row of C depends on that row of A only: not on m, the other rows, the thread count
// or the kernel (ISA) that ran. Every kernel gives the same bits.
struct Int8GemmParams {
  static constexpr char op_name[] = "int8_gemm";
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const int8_t* b = nullptr;
  int64_t ldb = 0;
  const float* b_scale = nullptr;  // (n)
  const float* bias = nullptr;     // (n) or null
  float alpha = 1.0f;
  float* c = nullptr;
  int64_t ldc = 0;
};

constexpr int64_t kInt8GemmMaxK = 131072;  // 127 * 127 * k stays inside int32

namespace ops {

// q (rows, cols) int8 and scale (rows) float32 of x (rows, cols) float32 by the rule above.
// Host tensors (weights are quantized on the host, when a model is loaded or converted).
void quantize_rows(Tensor& q, Tensor& scale, const Tensor& x);

// x (rows, cols) float32 = q (rows, cols) int8 * scale (rows); host tensors.
void dequantize_rows(Tensor& x, const Tensor& q, const Tensor& scale);

// out (..., n) = alpha * x (..., k) @ (q * scale)^T + bias: x, out float32, q (n, k) int8,
// scale (n) float32, bias (n) float32 or null; on the CPU.
void int8_linear(Tensor& out, const Tensor& x, const Tensor& q, const Tensor& scale, const Tensor* bias = nullptr,
                 float alpha = 1.0f);

// The int8 GEMM kernel this CPU runs: "avx512_vnni", "avx_vnni", "avx2" or "base"
// (CPUID at load, capped by TFORMER_CPU_ISA).
std::string cpu_int8_kernel();

}  // namespace ops

}  // namespace tformer
