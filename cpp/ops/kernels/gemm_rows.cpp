// C (m, n) = alpha * A (m, k) @ W^T + beta * C for up to 256 rows of A (decode steps,
// short encoder inputs) and W (n, k) row-major (a Linear weight), read in place: OpenBLAS
// would pack all of W on every call, moving the weights through memory twice.
//
// ROW-INVARIANT: row i of C has the same bits whatever m, wherever row i sits among the
// rows, and whatever the thread count, so a decode row rounds the same alone or inside
// any step (the in-flight engine relies on it). Every element C[i, j] is computed by one
// instruction sequence: lane l of one vector accumulator sums a[kk] * w[kk] for
// kk = l, l + L, l + 2L, ... in order with one fused multiply-add each (the k tail with
// zero-filled loads), then the build's one horizontal-sum tree (RowSimd::hsum), then
// alpha and beta. Micro-tiles of MR rows x NR weight rows only decide which elements
// share loads; their templates all run that same sequence per element.
//
// Threads split the weight rows into panels of kPanel; each panel is read from memory
// once and stays in cache while every row tile of A passes over it.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>

#include "../cpu_kernels.h"
#include "gemm_rows_simd.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

using S = RowSimd;
constexpr int kMr = 4;       // rows of A per micro-tile (the last tile takes m % 4)
constexpr int kMaxNr = 16;   // widest micro-tile (RowSimd::kNr)
constexpr int64_t kPanel = S::kPanel;
constexpr int64_t kL1Panel = 32 * 1024;  // bytes of weights per panel when several row tiles reuse it
constexpr int64_t kKSlice = 512;         // k per pass when k is longer (a multiple of every kLanes)

inline void store(const GemmParams& p, float* c, float s) {
  *c = p.beta == 0.0f ? p.alpha * s : p.alpha * s + p.beta * *c;
}

// Where a micro-tile's sums stand between two slices of k (gemm_rows splits a long k so
// that a panel of weights stays in L1): `spill` holds its MR x NR accumulators; `first`
// starts them at zero, else they are reloaded; `last` finishes them into C, else they are
// stored back. Slices begin at multiples of the vector width, so each lane still sums its
// products in one chain in k order: the same bits as one pass.
// `pf`: where the same weight rows of the thread's next panel start, or null; the first
// row tile of a panel prefetches them, one cache line per row per step (a weight row is
// too short a stream for the hardware prefetcher to run ahead on its own).
struct Slice {
  int64_t k0, k1;
  bool first, last;
  float* spill;
  const float* pf;
};

// Rows [i0, i0 + MR) of A against weight rows [j0, j0 + NR), over k in [s.k0, s.k1).
template <int MR, int NR>
void tile(const GemmParams& p, int64_t i0, int64_t j0, const Slice& s) {
  const float* a[MR];
  const float* w[NR];
  for (int r = 0; r < MR; ++r) a[r] = static_cast<const float*>(p.a) + (i0 + r) * p.lda;
  for (int j = 0; j < NR; ++j) w[j] = static_cast<const float*>(p.b) + (j0 + j) * p.ldb;
  S::vec acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) acc[r][j] = s.first ? S::zero() : S::load(s.spill + (r * NR + j) * S::kLanes);
  const int64_t k = s.k1;
  int64_t kk = s.k0;
  for (; kk + S::kLanes <= k; kk += S::kLanes) {
    if (s.pf)
      for (int j = 0; j < NR; ++j) __builtin_prefetch(s.pf + j * p.ldb + kk);
    S::vec av[MR];
    for (int r = 0; r < MR; ++r) av[r] = S::load(a[r] + kk);
    for (int j = 0; j < NR; ++j) {
      const S::vec wv = S::load(w[j] + kk);
      for (int r = 0; r < MR; ++r) acc[r][j] = S::fma(av[r], wv, acc[r][j]);
    }
  }
  if (kk < k) {  // the same step once more, lanes past k read as zeros
    const int64_t tail = k - kk;
    S::vec av[MR];
    for (int r = 0; r < MR; ++r) av[r] = S::load_tail(a[r] + kk, tail);
    for (int j = 0; j < NR; ++j) {
      const S::vec wv = S::load_tail(w[j] + kk, tail);
      for (int r = 0; r < MR; ++r) acc[r][j] = S::fma(av[r], wv, acc[r][j]);
    }
  }
  if (!s.last) {
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) S::store(s.spill + (r * NR + j) * S::kLanes, acc[r][j]);
    return;
  }
  float* C = static_cast<float*>(p.c);
  if constexpr (MR * NR == S::kBatch) {
    float sums[MR * NR];
    S::hsum_batch(&acc[0][0], sums);
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) store(p, C + (i0 + r) * p.ldc + j0 + j, sums[r * NR + j]);
  } else {
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) store(p, C + (i0 + r) * p.ldc + j0 + j, S::hsum(acc[r][j]));
  }
}

using TileFn = void (*)(const GemmParams&, int64_t, int64_t, const Slice&);
using TileRow = std::array<TileFn, kMaxNr + 1>;

template <int MR, int... Nr>
constexpr TileRow tile_row(std::integer_sequence<int, Nr...>) {
  return {nullptr, &tile<MR, Nr + 1>...};
}

// kTiles[MR][NR]: every width up to the widest, for the last micro-tile of a panel.
constexpr std::array<TileRow, kMr + 1> kTiles = {
    TileRow{}, tile_row<1>(std::make_integer_sequence<int, kMaxNr>{}),
    tile_row<2>(std::make_integer_sequence<int, kMaxNr>{}), tile_row<3>(std::make_integer_sequence<int, kMaxNr>{}),
    tile_row<4>(std::make_integer_sequence<int, kMaxNr>{})};

// Accumulators between slices of k, per calling thread, grown once (no allocation in a
// decode loop).
struct Spill {
  std::unique_ptr<float, decltype(&std::free)> buf{nullptr, &std::free};
  int64_t capacity = 0;
  float* get(int64_t floats) {
    if (floats > capacity) {
      const int64_t bytes = (floats * static_cast<int64_t>(sizeof(float)) + 63) / 64 * 64;
      buf.reset(static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(bytes))));
      if (!buf) throw std::bad_alloc();
      capacity = floats;
    }
    return buf.get();
  }
};

// Every row tile of A against weight rows [j_begin, j_end), k in slices of `k_slice`.
void panel(const GemmParams& p, int64_t j_begin, int64_t j_end, int64_t k_slice) {
  const int64_t width = j_end - j_begin;
  const float* W = static_cast<const float*>(p.b);
  float* spill = nullptr;
  if (k_slice < p.k) {
    thread_local Spill scratch;
    spill = scratch.get(p.m * width * S::kLanes);  // a vector per element of the panel
  }
  for (int64_t k0 = 0; k0 < p.k; k0 += k_slice) {
    Slice s{k0, std::min(p.k, k0 + k_slice), k0 == 0, k0 + k_slice >= p.k, nullptr, nullptr};
    for (int64_t i0 = 0; i0 < p.m; i0 += kMr) {
      const int mr = static_cast<int>(std::min<int64_t>(kMr, p.m - i0));
      const int nr_max = S::kNr[mr];
      for (int64_t j = j_begin; j < j_end; j += nr_max) {
        const int nr = static_cast<int>(std::min<int64_t>(nr_max, j_end - j));
        if (spill) s.spill = spill + (i0 * width + (j - j_begin) * mr) * S::kLanes;
        s.pf = i0 == 0 && j + width + nr <= p.n ? W + (j + width) * p.ldb : nullptr;
        kTiles[mr][nr](p, i0, j, s);
      }
    }
  }
}

}  // namespace

void gemm_rows(const GemmParams& p) {
  // Several row tiles: a panel of weights small enough to stay in L1 while they all pass
  // over it, for a slice of k at a time when k is long.
  const bool reuse = p.m > kMr;
  const int64_t k_slice = reuse && p.k > kKSlice * 3 / 2 ? kKSlice : p.k;
  const int64_t fit = kL1Panel / std::max<int64_t>(1, k_slice * static_cast<int64_t>(sizeof(float))) / kMr * kMr;
  const int64_t width = reuse ? std::clamp<int64_t>(fit, kMr, kPanel) : kPanel;
  const int64_t panels = (p.n + width - 1) / width;
#pragma omp parallel for schedule(static) if (p.m * p.n * p.k > 65536)
  for (int64_t b = 0; b < panels; ++b) panel(p, b * width, std::min(p.n, (b + 1) * width), k_slice);
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA
