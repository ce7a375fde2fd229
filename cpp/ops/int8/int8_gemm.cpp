// The CPU entry of int8_gemm (tformer/ops/int8.h) and its portable reference kernel.
// Compiled with -ffp-contract=off (CMakeLists.txt): the epilogue's float operations are
// the contract's, in its order, in every kernel.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../cpu_kernels.h"
#include "tformer/ops/int8.h"

namespace tformer::cpu {
namespace {

// Activation rows quantized by the contract's rule into q (m, k) and scale (m).
void quantize_activations(const Int8GemmParams& p, int8_t* q, float* scale) {
  for (int64_t i = 0; i < p.m; ++i) {
    const float* row = p.a + i * p.lda;
    float amax = 0.0f;
    for (int64_t c = 0; c < p.k; ++c) amax = std::max(amax, std::fabs(row[c]));
    int8_t* out = q + i * p.k;
    if (!(amax > 0.0f)) {  // zero row (or NaN: garbage in, no crash)
      std::fill(out, out + p.k, int8_t{0});
      scale[i] = 0.0f;
      continue;
    }
    const float inv = 127.0f / amax;
    for (int64_t c = 0; c < p.k; ++c)
      out[c] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, std::nearbyint(row[c] * inv))));
    scale[i] = amax / 127.0f;
  }
}

void int8_gemm_reference(const Int8GemmParams& p) {
  // Per-thread scratch that only grows: no allocation per call in the steady state.
  thread_local std::vector<int8_t> qa;
  thread_local std::vector<float> sa;
  if (static_cast<int64_t>(qa.size()) < p.m * p.k) qa.resize(static_cast<size_t>(p.m * p.k));
  if (static_cast<int64_t>(sa.size()) < p.m) sa.resize(static_cast<size_t>(p.m));
  quantize_activations(p, qa.data(), sa.data());
  const int8_t* A = qa.data();
  const float* as = sa.data();
#pragma omp parallel for schedule(static) if (p.m * p.n * p.k > 65536)
  for (int64_t j = 0; j < p.n; ++j) {
    const int8_t* w = p.b + j * p.ldb;
    for (int64_t i = 0; i < p.m; ++i) {
      const int8_t* a = A + i * p.k;
      int32_t acc = 0;
      for (int64_t c = 0; c < p.k; ++c) acc += static_cast<int32_t>(a[c]) * static_cast<int32_t>(w[c]);
      float s = static_cast<float>(acc) * (as[i] * p.b_scale[j]);
      s = p.alpha * s;
      if (p.bias) s = s + p.bias[j];
      p.c[i * p.ldc + j] = s;
    }
  }
}

}  // namespace

void int8_gemm(const Int8GemmParams& p) { int8_gemm_reference(p); }

TFORMER_CPU_OP(int8_gemm);

}  // namespace tformer::cpu

namespace tformer::ops {
std::string cpu_int8_kernel() { return "base"; }
}  // namespace tformer::ops
