// Cross-entropy with label smoothing, fused with its gradient, one row at a time:
// the row max, then sum exp(x - max) and sum x in one vector pass, then the gradient in
// a second. Matches torch.nn.functional.cross_entropy(label_smoothing=eps,
// ignore_index, reduction="none"): the smoothed target puts 1 - eps + eps / V on the
// label and eps / V on every class, so
//   loss = (1 - eps) * (lse - x[label]) + eps * (lse - mean(x)),  lse = log sum_c exp(x_c).
#include <algorithm>
#include <cmath>
#include <limits>

#include "../cpu_kernels.h"
#include "tformer/ops/cross_entropy.h"
#include "tformer/errors.h"
#include "vec_math.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

void cross_entropy_row(const CrossEntropyParams& p, int64_t r) {
  const int64_t V = p.vocab;
  const float* x = static_cast<const float*>(p.logits) + r * V;
  float* dx = p.dlogits ? static_cast<float*>(p.dlogits) + r * V : nullptr;
  const int32_t label = p.labels[r];
  if (label == p.ignore_index) {
    p.loss[r] = 0.0f;
    if (dx) std::fill(dx, dx + V, 0.0f);
    return;
  }
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < V; ++c) m = std::max(m, x[c]);
  float sum = 0.0f, sum_x = 0.0f;
#pragma omp simd reduction(+ : sum, sum_x)
  for (int64_t c = 0; c < V; ++c) {
    sum += fast_exp(x[c] - m);
    sum_x += x[c];
  }
  const float lse = m + std::log(sum);
  const float eps = p.smoothing;
  const float x_label = x[label];  // read before dx (which may alias x) is written
  float loss = (1.0f - eps) * (lse - x_label);
  if (eps != 0.0f) loss += eps * (lse - sum_x / static_cast<float>(V));  // 0 * inf would be NaN
  p.loss[r] = loss;
  if (!dx) return;
  const float scale = p.grad_scale, uniform = eps / static_cast<float>(V);
#pragma omp simd
  for (int64_t c = 0; c < V; ++c) dx[c] = (fast_exp(x[c] - lse) - uniform) * scale;
  dx[label] -= (1.0f - eps) * scale;
}

}  // namespace

void cross_entropy(const CrossEntropyParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu cross_entropy supports float32 only, got ", dtype_name(p.dtype));
  if (p.vocab == 0) return;
#pragma omp parallel for schedule(static) if (p.rows > 1 && p.rows * p.vocab > 16384)
  for (int64_t r = 0; r < p.rows; ++r) cross_entropy_row(p, r);
}

TFORMER_CPU_OP(cross_entropy);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
