// gemm_rows for a few rows of A (a greedy or short beam decode step; gemm_rows.h): columns
// of C in vector lanes. L weight rows (L lanes) are read in place, L values of k at a time,
// transposed in registers, and for each kk in order every row of A adds a[kk] (broadcast)
// times that column of weights to its accumulator: acc_j = fma(a[kk], W[j, kk], acc_j), the
// arithmetic of gemm_rows.h, with no horizontal sums. One transpose serves all the rows of
// A, so a step streams the weights once. Threads split the strips of L weight rows; a strip
// prefetches its rows kPrefetch floats ahead. The shuffles of the transpose limit a one-row
// product (docs/PERFORMANCE.md): it runs near, not at, the old dot-product kernel's speed
// where the weights sit in cache, and at it where they stream from memory.
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

// The weight rows of a strip, addressed from a few moving pointers (16 row pointers would
// not fit in registers, and reloading them doubles the loads): row 4g + i of the strip is
// base[g] + off(i), off = 0, ld, 2 ld, 3 ld, which x86 addressing takes in one instruction.
constexpr int kGroups = kLanes / 4;
// Floats ahead in each weight row that a strip prefetches: a strip reads 16 to 32 rows at
// once, more streams than the hardware prefetcher follows (past a row's end it fetches the
// start of the next row, which the next strip reads).
constexpr int64_t kPrefetch = 32;  // two cache lines (farther, 128, measured no faster)

struct StripRows {
  const float* base[kGroups];
  int64_t ld, ld3;
  const float* row(int r, int64_t kk) const {
    const int i = r % 4;
    const float* b = base[r / 4] + kk;
    return i == 0 ? b : i == 1 ? b + ld : i == 2 ? b + 2 * ld : b + ld3;
  }
};

// t[q] lane r = W[row r, kk + q] for q < L (`tail` < L: only that many, the rest zero).
inline void load_block(const StripRows& w, int64_t kk, int64_t tail, vec* t) {
  const float* at[kLanes];
  for (int r = 0; r < kLanes; ++r) at[r] = w.row(r, kk);
  if (tail == kLanes) {
#if defined(__AVX512F__)
    for (int r = 0; r < kLanes; ++r) t[r] = S::load(at[r]);
    S::transpose(t);
#else
    S::load_transposed(at, t);
#endif
    return;
  }
  for (int r = 0; r < kLanes; ++r) t[r] = S::load_tail(at[r], tail);
  S::transpose(t);
}

// Strips of L weight rows side by side: each row of A keeps one accumulator per strip, so a
// step with few rows still has several independent fma chains in flight (one chain waits
// the fma latency at every step). AVX2 needs them below 4 rows; on AVX-512 the transpose's
// shuffles limit first, and two strips (32 rows in flight) ran slower for one row.
template <int M>
constexpr int kStrips = kLanes == 8 && M <= 3 ? 2 : 1;

// C[i, j0 .. j0 + NS L) for the M rows of A (fewer columns at the end of C).
template <int M, int NS>
void strips(const GemmParams& p, int64_t j0) {
  const float* A = static_cast<const float*>(p.a);
  const float* W = static_cast<const float*>(p.b);
  StripRows w[NS];
  for (int s = 0; s < NS; ++s) {
    // Rows past n: the strip starts lower so that it ends at the last row; those lanes'
    // sums are dropped (each lane's sum is its own row's, so nothing else changes).
    const int64_t first = std::min<int64_t>(j0 + s * kLanes, std::max<int64_t>(0, p.n - kLanes));
    for (int g = 0; g < kGroups; ++g) w[s].base[g] = W + (first + 4 * g) * p.ldb;
    w[s].ld = p.ldb, w[s].ld3 = 3 * p.ldb;
  }
  const float* a[M];
  for (int i = 0; i < M; ++i) a[i] = A + i * p.lda;
  vec acc[NS][M];
  for (int s = 0; s < NS; ++s)
    for (int i = 0; i < M; ++i) acc[s][i] = S::zero();
  vec t[kLanes];
  int64_t kk = 0;
  for (; kk + kLanes <= p.k; kk += kLanes) {
    for (int s = 0; s < NS; ++s) {
      if (kLanes == 16 || (kk & 15) == 0)  // a cache line per row
        for (int r = 0; r < kLanes; ++r) __builtin_prefetch(w[s].row(r, kk + kPrefetch));
      load_block(w[s], kk, kLanes, t);
      for (int q = 0; q < kLanes; ++q)
        for (int i = 0; i < M; ++i) acc[s][i] = S::fma(S::broadcast(a[i] + kk + q), t[q], acc[s][i]);
    }
  }
  if (kk < p.k) {  // the k tail: the same steps, in order, for the values that exist
    const int64_t tail = p.k - kk;
    for (int s = 0; s < NS; ++s) {
      load_block(w[s], kk, tail, t);
      for (int q = 0; q < tail; ++q)
        for (int i = 0; i < M; ++i) acc[s][i] = S::fma(S::broadcast(a[i] + kk + q), t[q], acc[s][i]);
    }
  }
  // The epilogue of gemm_rows.h, lane by lane what gemm_rows_packed's write_back computes.
  const vec alpha = S::broadcast(&p.alpha), beta = S::broadcast(&p.beta);
  for (int s = 0; s < NS; ++s) {
    const int64_t col0 = j0 + s * kLanes;
    if (col0 >= p.n) break;
    const int64_t first = std::min<int64_t>(col0, std::max<int64_t>(0, p.n - kLanes));
    const int64_t skip = col0 - first;  // lanes already written by the strip before
    const int64_t cols = std::min<int64_t>(kLanes, p.n - first);
    for (int i = 0; i < M; ++i) {
      alignas(64) float lane[kLanes];
      float* c = static_cast<float*>(p.c) + i * p.ldc + first;
      if (skip == 0 && cols == kLanes) {
        vec out = S::mul(alpha, acc[s][i]);
        if (p.beta != 0.0f) out = S::add(out, S::mul(beta, S::load(c)));
        S::store(c, out);
        continue;
      }
      S::store(lane, acc[s][i]);
      for (int64_t l = skip; l < cols; ++l) c[l] = p.beta == 0.0f ? p.alpha * lane[l] : p.alpha * lane[l] + p.beta * c[l];
    }
  }
}

struct StripFns {
  int width;                                                  // columns per call: strips x lanes
  void (*fn)(const GemmParams&, int64_t);  // columns [j0, j0 + width), fewer at the end
};

template <int... M>
constexpr std::array<StripFns, kNarrowMaxRows + 1> make_strips(std::integer_sequence<int, M...>) {
  return {StripFns{0, nullptr}, StripFns{kStrips<M + 1> * kLanes, &strips<M + 1, kStrips<M + 1>>}...};
}

}  // namespace

void gemm_rows_narrow(const GemmParams& p) {
  static constexpr auto table = make_strips(std::make_integer_sequence<int, kNarrowMaxRows>{});
  if (p.n < kLanes) {  // too few weight rows for one strip: the same arithmetic, rows in lanes
    gemm_rows_packed(p);
    return;
  }
  const StripFns f = table[p.m];
  const int64_t count = (p.n + f.width - 1) / f.width;
#pragma omp parallel for schedule(static) if (p.m * p.n * p.k > 65536)
  for (int64_t g = 0; g < count; ++g) f.fn(p, g * f.width);
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA

#endif
