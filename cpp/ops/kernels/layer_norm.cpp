// Layer normalisation with the residual add (and a bias) fused in front of it:
// s = x + bias + residual; out = (s - mean) / sqrt(var + eps) * gamma + beta.
#include <cmath>
#include <vector>

#include "../cpu_kernels.h"
#include "tformer/errors.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {


void layer_norm_rows(const LayerNormParams& p, int64_t r0, int64_t r1, float* scratch) {
  const int64_t n = p.cols;
  const float* bias = static_cast<const float*>(p.bias);
  const float* gamma = static_cast<const float*>(p.gamma);
  const float* beta = static_cast<const float*>(p.beta);
  for (int64_t r = r0; r < r1; ++r) {
    const float* x = static_cast<const float*>(p.x) + r * n;
    const float* res = p.residual ? static_cast<const float*>(p.residual) + r * n : nullptr;
    // The sum goes to sum_out when asked for, else to scratch (out may alias x).
    float* s = p.sum_out ? static_cast<float*>(p.sum_out) + r * n : scratch;
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) s[c] = x[c] + (bias ? bias[c] : 0.0f) + (res ? res[c] : 0.0f);
    // Two passes with 8-lane partial sums (the simd reduction): mean first, then the
    // centred variance, which is stable where E[x^2] - mean^2 is not.
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < n; ++c) sum += s[c];
    const float mean = sum / static_cast<float>(n);
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int64_t c = 0; c < n; ++c) {
      const float d = s[c] - mean;
      sq += d * d;
    }
    const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(n) + p.eps);
    float* out = static_cast<float*>(p.out) + r * n;
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = (s[c] - mean) * rstd * gamma[c] + beta[c];
  }
}

}  // namespace

void layer_norm(const LayerNormParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu layer_norm supports float32 only, got ", dtype_name(p.dtype));
  if (p.cols == 0) return;
#pragma omp parallel if (p.rows * p.cols > 16384)
  {
    static thread_local std::vector<float> scratch;
    if (scratch.size() < static_cast<size_t>(p.cols)) scratch.resize(static_cast<size_t>(p.cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < p.rows; r += 8) {
      layer_norm_rows(p, r, r + 8 < p.rows ? r + 8 : p.rows, scratch.data());
    }
  }
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA
