// Layer normalisation with the residual add (and a bias) fused in front of it:
// s = x + bias + residual; out = (s - mean) / sqrt(var + eps) * gamma + beta;
// or RMSNorm (p.rms, T5): out = s / sqrt(mean(s^2) + eps) * gamma.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../cpu_kernels.h"
#include "tformer/ops/layer_norm.h"
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
    if (p.mean_out) p.mean_out[r] = mean;  // saved for the backward (training)
    if (p.rstd_out) p.rstd_out[r] = rstd;
    float* out = static_cast<float*>(p.out) + r * n;
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = (s[c] - mean) * rstd * gamma[c] + beta[c];
  }
}

// RMSNorm (T5): out = s * rstd * gamma, rstd = 1 / sqrt(mean(s^2) + eps); no mean, no beta.
void rms_norm_rows(const LayerNormParams& p, int64_t r0, int64_t r1, float* scratch) {
  const int64_t n = p.cols;
  const float* bias = static_cast<const float*>(p.bias);
  const float* gamma = static_cast<const float*>(p.gamma);
  for (int64_t r = r0; r < r1; ++r) {
    const float* x = static_cast<const float*>(p.x) + r * n;
    const float* res = p.residual ? static_cast<const float*>(p.residual) + r * n : nullptr;
    float* s = p.sum_out ? static_cast<float*>(p.sum_out) + r * n : scratch;  // out may alias x
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int64_t c = 0; c < n; ++c) {
      const float v = x[c] + (bias ? bias[c] : 0.0f) + (res ? res[c] : 0.0f);
      s[c] = v;
      sq += v * v;
    }
    const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(n) + p.eps);
    if (p.mean_out) p.mean_out[r] = 0.0f;
    if (p.rstd_out) p.rstd_out[r] = rstd;  // saved for the backward (training)
    float* out = static_cast<float*>(p.out) + r * n;
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) out[c] = s[c] * rstd * gamma[c];
  }
}

}  // namespace

void layer_norm(const LayerNormParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu layer_norm supports float32 only, got ", dtype_name(p.dtype));
  if (p.cols == 0) return;
  const auto rows = p.rms ? &rms_norm_rows : &layer_norm_rows;
#pragma omp parallel if (p.rows * p.cols > 16384)
  {
    static thread_local std::vector<float> scratch;
    if (scratch.size() < static_cast<size_t>(p.cols)) scratch.resize(static_cast<size_t>(p.cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < p.rows; r += 8) {
      rows(p, r, r + 8 < p.rows ? r + 8 : p.rows, scratch.data());
    }
  }
}


// ---------------------------------------------------------------- backward
// Backward of layer normalisation, from the s, mean and rstd the forward saved:
//   xhat = (s - mean) * rstd,  g = dout * gamma,
//   ds = rstd * (g - mean(g) - xhat * mean(g * xhat))      (per row)
//   dgamma += sum_rows(dout * xhat),  dbeta += sum_rows(dout)  (across rows)
// RMSNorm (p.rms) is the same with mean = 0 and without the mean(g) term.
// The row part is independent per row; the parameter part is a reduction across rows,
// done without atomics: each fixed group of rows sums into its own partial vector, then
// the partials are added in group order. The groups do not depend on the thread count,
// so the result is the same bits with 1 or 16 threads.
namespace {

constexpr int64_t kMaxGroups = 32;     // partial (dgamma, dbeta) vectors at most
constexpr int64_t kMinGroupRows = 8;   // fewer rows per group is not worth a partial

// Rows r0..r1-1; partial (2, cols) receives (dout * xhat, dout) summed over them, or is null.
void backward_rows(const LayerNormBackwardParams& p, int64_t r0, int64_t r1, float* partial) {
  const int64_t n = p.cols;
  const float* gamma = static_cast<const float*>(p.gamma);
  float* pg = partial;
  float* pb = partial ? partial + n : nullptr;
  const float inv_n = 1.0f / static_cast<float>(n);
  for (int64_t r = r0; r < r1; ++r) {
    const float* dy = static_cast<const float*>(p.dout) + r * n;
    const float* s = static_cast<const float*>(p.s) + r * n;
    float* ds = static_cast<float*>(p.ds) + r * n;
    // RMSNorm: nothing is centred (mean 0) and mean(g) is not subtracted (mg 0 below).
    const float mean = p.rms ? 0.0f : p.mean[r], rstd = p.rstd[r];
    float sum_g = 0.0f, sum_gx = 0.0f;
    if (partial) {
#pragma omp simd reduction(+ : sum_g, sum_gx)
      for (int64_t c = 0; c < n; ++c) {
        const float xhat = (s[c] - mean) * rstd;
        const float g = dy[c] * gamma[c];
        sum_g += g;
        sum_gx += g * xhat;
        pg[c] += dy[c] * xhat;
        pb[c] += dy[c];
      }
    } else {
#pragma omp simd reduction(+ : sum_g, sum_gx)
      for (int64_t c = 0; c < n; ++c) {
        const float xhat = (s[c] - mean) * rstd;
        const float g = dy[c] * gamma[c];
        sum_g += g;
        sum_gx += g * xhat;
      }
    }
    const float mg = p.rms ? 0.0f : sum_g * inv_n, mgx = sum_gx * inv_n;
    // ds may alias dout: each element is read before it is written.
    if (p.accumulate) {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) {
        const float xhat = (s[c] - mean) * rstd;
        ds[c] += rstd * (dy[c] * gamma[c] - mg - xhat * mgx);
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) {
        const float xhat = (s[c] - mean) * rstd;
        ds[c] = rstd * (dy[c] * gamma[c] - mg - xhat * mgx);
      }
    }
  }
}

}  // namespace

void layer_norm_backward(const LayerNormBackwardParams& p) {
  if (p.dtype != DType::f32)
    throw_type_error("cpu layer_norm_backward supports float32 only, got ", dtype_name(p.dtype));
  if (p.rows == 0 || p.cols == 0) return;
  const bool params = p.dgamma || p.dbeta;
  const int64_t groups = std::max<int64_t>(1, std::min(kMaxGroups, p.rows / kMinGroupRows));
  const int64_t group_rows = (p.rows + groups - 1) / groups;
  // The partials live in the calling thread's buffer, shared with the team.
  static thread_local std::vector<float> partials;
  if (params && partials.size() < static_cast<size_t>(groups * 2 * p.cols))
    partials.resize(static_cast<size_t>(groups * 2 * p.cols));
  float* part = params ? partials.data() : nullptr;
  const bool parallel = p.rows * p.cols > 16384;
#pragma omp parallel if (parallel)
  {
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t r0 = g * group_rows, r1 = std::min(p.rows, r0 + group_rows);
      float* pg = part ? part + g * 2 * p.cols : nullptr;
      if (pg) std::fill(pg, pg + 2 * p.cols, 0.0f);  // by the thread that sums into it
      if (r0 < r1) backward_rows(p, r0, r1, pg);
    }
    if (params) {
      // Column blocks: each sums the groups' partials in group order.
      float* dgamma = static_cast<float*>(p.dgamma);
      float* dbeta = static_cast<float*>(p.dbeta);
      const int64_t n = p.cols;
#pragma omp for schedule(static)
      for (int64_t c0 = 0; c0 < n; c0 += 256) {
        const int64_t c1 = std::min(n, c0 + 256);
        for (int64_t g = 0; g < groups; ++g) {
          const float* pg = part + g * 2 * n;
          if (dgamma) {
#pragma omp simd
            for (int64_t c = c0; c < c1; ++c) dgamma[c] += pg[c];
          }
          if (dbeta) {
#pragma omp simd
            for (int64_t c = c0; c < c1; ++c) dbeta[c] += pg[n + c];
          }
        }
      }
    }
  }
}

TFORMER_CPU_OP(layer_norm);
TFORMER_CPU_OP(layer_norm_backward);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
