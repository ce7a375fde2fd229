// gemm_rows for a few rows of A (a greedy or short beam decode step; gemm_rows.h): columns
// of C in vector lanes. L weight rows (L lanes) are read in place, L values of k at a time,
// transposed in registers, and for each kk in order every row of A adds a[kk] (broadcast)
// times that column of weights to its accumulator: acc_j = fma(a[kk], W[j, kk], acc_j), the
// arithmetic of gemm_rows.h, with no horizontal sums. One transpose serves all the rows of
// A, so a step streams the weights once, close to memory speed. Threads split the strips
// of L weight rows; each strip prefetches the next one's rows as it goes (a weight row is
// too short a stream for the hardware prefetcher to run ahead on its own).
//
// AVX-512 and AVX2+FMA builds only (the baseline build runs gemm_rows_packed for every m).
#include <algorithm>
#include <array>
#include <utility>

#include "gemm_rows.h"
#include "gemm_rows_simd.h"

#if defined(__AVX2__) && defined(__FMA__)

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

using S = RowSimd;
using vec = S::vec;
constexpr int kLanes = S::kLanes;

// Loads the L x L block W[j0 + r, kk .. kk + L) (`tail` < L: only that many values of k,
// the rest zero) and transposes it: t[q] lane r = W[j0 + r, kk + q].
inline void load_block(const float* const* w, int64_t kk, int64_t tail, vec* t) {
  if (tail == kLanes)
    for (int r = 0; r < kLanes; ++r) t[r] = S::load(w[r] + kk);
  else
    for (int r = 0; r < kLanes; ++r) t[r] = S::load_tail(w[r] + kk, tail);
  S::transpose(t);
}

// C[i, j0 .. j0 + nr) for the M rows of A; `pf`: the next strip's first weight row, or null.
template <int M>
void strip(const GemmParams& p, int64_t j0, int64_t nr, const float* pf) {
  const float* A = static_cast<const float*>(p.a);
  const float* w[kLanes];  // lanes past n repeat the last weight row: their sums are dropped
  for (int r = 0; r < kLanes; ++r) w[r] = static_cast<const float*>(p.b) + (j0 + std::min<int64_t>(r, nr - 1)) * p.ldb;
  const float* a[M];
  for (int i = 0; i < M; ++i) a[i] = A + i * p.lda;
  vec acc[M];
  for (int i = 0; i < M; ++i) acc[i] = S::zero();
  vec t[kLanes];
  int64_t kk = 0;
  for (; kk + kLanes <= p.k; kk += kLanes) {
    if (pf)
      for (int r = 0; r < kLanes; ++r) __builtin_prefetch(pf + r * p.ldb + kk);
    load_block(w, kk, kLanes, t);
    for (int q = 0; q < kLanes; ++q)
      for (int i = 0; i < M; ++i) acc[i] = S::fma(S::broadcast(a[i] + kk + q), t[q], acc[i]);
  }
  if (kk < p.k) {  // the k tail: the same steps, in order, for the values that exist
    const int64_t tail = p.k - kk;
    load_block(w, kk, tail, t);
    for (int q = 0; q < tail; ++q)
      for (int i = 0; i < M; ++i) acc[i] = S::fma(S::broadcast(a[i] + kk + q), t[q], acc[i]);
  }
  // The epilogue of gemm_rows.h, lane by lane what gemm_rows_packed's write_back computes.
  const vec alpha = S::broadcast(&p.alpha), beta = S::broadcast(&p.beta);
  for (int i = 0; i < M; ++i) {
    float* c = static_cast<float*>(p.c) + i * p.ldc + j0;
    vec out = S::mul(alpha, acc[i]);
    if (nr == kLanes) {
      if (p.beta != 0.0f) out = S::add(out, S::mul(beta, S::load(c)));
      S::store(c, out);
    } else {
      if (p.beta != 0.0f) out = S::add(out, S::mul(beta, S::load_tail(c, nr)));
      S::store_tail(c, out, nr);
    }
  }
}

using StripFn = void (*)(const GemmParams&, int64_t, int64_t, const float*);

template <int... M>
constexpr std::array<StripFn, kNarrowMaxRows + 1> make_strips(std::integer_sequence<int, M...>) {
  return {nullptr, &strip<M + 1>...};
}

}  // namespace

void gemm_rows_narrow(const GemmParams& p) {
  static constexpr auto strips = make_strips(std::make_integer_sequence<int, kNarrowMaxRows>{});
  const StripFn fn = strips[p.m];
  const int64_t count = (p.n + kLanes - 1) / kLanes;
#pragma omp parallel for schedule(static) if (p.m * p.n * p.k > 65536)
  for (int64_t s = 0; s < count; ++s) {
    const int64_t j0 = s * kLanes;
    const int64_t nr = std::min<int64_t>(kLanes, p.n - j0);
    const float* pf = j0 + kLanes + kLanes <= p.n ? static_cast<const float*>(p.b) + (j0 + kLanes) * p.ldb : nullptr;
    fn(p, j0, nr, pf);
  }
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA

#endif
