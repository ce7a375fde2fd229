// Row softmax helpers for the host-side search (beam search, sampling): vector loops
// over the vocabulary with the branch-free exp of vec_math.h.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../cpu_kernels.h"
#include "vec_math.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

float row_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

float logsumexp(const float* x, int64_t n) {
  const float m = row_max(x, n);
  if (!(m > -std::numeric_limits<float>::infinity())) return m;  // all -inf (or NaN)
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += fast_exp(x[i] - m);
  return m + std::log(sum);
}

float exp_shifted(float* x, int64_t n, float shift) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    x[i] = fast_exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA
