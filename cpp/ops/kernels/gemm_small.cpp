// C (m, n) = alpha * A (m, k) @ B^T + beta * C for a short A (the rows of a decode
// step) and B stored (n, k) row-major (a Linear weight). OpenBLAS would pack all of B
// for every call, moving the weights through memory twice; here each weight row is
// read once and multiplied with every row of A while it sits in L1, so a decode step
// runs at the speed of streaming the weights.
#include <algorithm>

#include "../cpu_kernels.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

inline void store(const GemmParams& p, float* c, float s) {
  *c = p.alpha * s + (p.beta != 0.0f ? p.beta * *c : 0.0f);
}

// Four weight rows at a time against every row of A, two rows of A per pass
// (8 accumulators: 6 loads feed 8 FMAs).
inline void block4(const GemmParams& p, int64_t j0) {
  const float* A = static_cast<const float*>(p.a);
  const float* W = static_cast<const float*>(p.b);
  float* C = static_cast<float*>(p.c);
  const int64_t k = p.k;
  const float* w0 = W + (j0 + 0) * p.ldb;
  const float* w1 = W + (j0 + 1) * p.ldb;
  const float* w2 = W + (j0 + 2) * p.ldb;
  const float* w3 = W + (j0 + 3) * p.ldb;
  int64_t i = 0;
  for (; i + 1 < p.m; i += 2) {
    const float* a = A + i * p.lda;
    const float* b = a + p.lda;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3, t0, t1, t2, t3)
    for (int64_t kk = 0; kk < k; ++kk) {
      const float av = a[kk], bv = b[kk];
      s0 += av * w0[kk];
      s1 += av * w1[kk];
      s2 += av * w2[kk];
      s3 += av * w3[kk];
      t0 += bv * w0[kk];
      t1 += bv * w1[kk];
      t2 += bv * w2[kk];
      t3 += bv * w3[kk];
    }
    float* c = C + i * p.ldc + j0;
    float* d = c + p.ldc;
    store(p, c + 0, s0), store(p, c + 1, s1), store(p, c + 2, s2), store(p, c + 3, s3);
    store(p, d + 0, t0), store(p, d + 1, t1), store(p, d + 2, t2), store(p, d + 3, t3);
  }
  if (i < p.m) {
    const float* a = A + i * p.lda;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t kk = 0; kk < k; ++kk) {
      const float av = a[kk];
      s0 += av * w0[kk];
      s1 += av * w1[kk];
      s2 += av * w2[kk];
      s3 += av * w3[kk];
    }
    float* c = C + i * p.ldc + j0;
    store(p, c + 0, s0), store(p, c + 1, s1), store(p, c + 2, s2), store(p, c + 3, s3);
  }
}

inline void single_row(const GemmParams& p, int64_t j) {
  const float* A = static_cast<const float*>(p.a);
  const float* w = static_cast<const float*>(p.b) + j * p.ldb;
  float* C = static_cast<float*>(p.c);
  for (int64_t i = 0; i < p.m; ++i) {
    const float* a = A + i * p.lda;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t kk = 0; kk < p.k; ++kk) s += a[kk] * w[kk];
    store(p, &C[i * p.ldc + j], s);
  }
}

}  // namespace

void gemm_short_a(const GemmParams& p) {
  const int64_t blocks = p.n / 4;
#pragma omp parallel for schedule(static) if (p.n * p.k * p.m > 65536)
  for (int64_t b = 0; b < blocks; ++b) block4(p, b * 4);
  for (int64_t j = blocks * 4; j < p.n; ++j) single_row(p, j);
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA
