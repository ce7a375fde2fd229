// gemm_rows for ~8..256 rows of A (gemm_rows.h): rows of A in vector lanes, W read in
// place. OpenBLAS packs all of W on every call, which for a decode step moves the weights
// through memory twice and costs as much as the product itself.
//
// Here A, the small operand, is transposed once per call into k-major tiles of L·V rows
// (zero-padded; L lanes). The micro-kernel broadcasts single weights W[j, kk] of NR weight
// rows, read in place, against V vectors of A and accumulates an (L·V) x NR block of C,
// transposed, in registers: no horizontal sums, and each element is one fma chain over k
// in order (gemm_rows.h), whatever tile it falls in. Each block of 24 weight rows is read
// from memory once and stays in cache while every tile of A passes over it; threads split
// the blocks. Measured in bench/bench_gemm.py and docs/PERFORMANCE.md.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <utility>

#include "gemm_rows.h"
#include "gemm_rows_simd.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

using S = RowSimd;
using vec = S::vec;
constexpr int kLanes = S::kLanes;
constexpr int kMaxV = S::kMaxV;
constexpr int kMaxNr = 12;
constexpr int64_t kAlign = 64;
// Weight rows per block, a multiple of every panel width. (Blocking k as well, so that
// a tile of A stays in L1, measured no faster: bench/bench_gemm.py.)
constexpr int64_t kBlock = 24;
constexpr int64_t kMaxRows = kRowsGemmMaxRows;

inline void prefetch(const float* p) { __builtin_prefetch(p); }

// t[j * LV + r] = sum_kk a[kk * LV + r] * w[j * ldw + kk] for j < NR. `pf`: the rows
// this panel's position reads next (in the next block); one cache line per row per 16
// steps is prefetched from there, ~24·k·4 bytes (tens of microseconds) ahead.
template <int V, int NR>
void micro(const float* a, const float* w, int64_t ldw, int64_t k, float* t, const float* pf) {
  vec acc[NR][V];
  for (int j = 0; j < NR; ++j)
    for (int v = 0; v < V; ++v) acc[j][v] = S::zero();
  const float* wr[NR];
  for (int j = 0; j < NR; ++j) wr[j] = w + j * ldw;
  auto step = [&](int64_t kk) {
    vec av[V];
    for (int v = 0; v < V; ++v) av[v] = S::load(a + kk * V * kLanes + v * kLanes);
    for (int j = 0; j < NR; ++j) {
      const vec b = S::broadcast(wr[j] + kk);
      for (int v = 0; v < V; ++v) acc[j][v] = S::fma(av[v], b, acc[j][v]);
    }
  };
  int64_t kk = 0;
  for (; kk + 4 <= k; kk += 4) {
    if ((kk & 15) == 0)
      for (int j = 0; j < NR; ++j) prefetch(pf + j * ldw + kk);
    step(kk), step(kk + 1), step(kk + 2), step(kk + 3);
  }
  for (; kk < k; ++kk) step(kk);
  for (int j = 0; j < NR; ++j)
    for (int v = 0; v < V; ++v) S::store(t + (j * V + v) * kLanes, acc[j][v]);
}

using MicroFn = void (*)(const float*, const float*, int64_t, int64_t, float*, const float*);

template <int V, int NR>
constexpr MicroFn pick() {
  if constexpr (V <= kMaxV && NR <= S::kNr[V]) return &micro<V, NR>;
  else return nullptr;  // wider than this tile's panels: never asked for
}

template <int V, int... Nr>
constexpr std::array<MicroFn, kMaxNr + 1> micro_row(std::integer_sequence<int, Nr...>) {
  return {nullptr, pick<V, Nr + 1>()...};
}

// micro_table<V>()[nr]: every panel width up to the widest, for the last panel of a block.
template <int V>
constexpr std::array<MicroFn, kMaxNr + 1> micro_table() {
  return micro_row<V>(std::make_integer_sequence<int, kMaxNr>{});
}

struct Tile {
  int64_t row0, rows;  // rows of A (and C) in this tile
  int v;               // vectors: L·v >= rows
  int64_t offset;      // floats into the packed buffer
};

// Packed A, per calling thread, grown once (no allocation in a decode loop).
struct Scratch {
  std::unique_ptr<float, decltype(&std::free)> buf{nullptr, &std::free};
  int64_t capacity = 0;
  float* get(int64_t floats) {
    if (floats > capacity) {
      const int64_t bytes = (floats * static_cast<int64_t>(sizeof(float)) + kAlign - 1) / kAlign * kAlign;
      buf.reset(static_cast<float*>(std::aligned_alloc(kAlign, static_cast<size_t>(bytes))));
      if (!buf) throw std::bad_alloc();
      capacity = floats;
    }
    return buf.get();
  }
};

// Packs rows [row0, row0 + rows) of A, k-major, zero-padded to L·v rows.
void pack(const float* A, int64_t lda, const Tile& t, float* dst, int64_t k0, int64_t k1) {
  const int64_t width = t.v * kLanes;
  for (int64_t r = 0; r < width; ++r) {
    float* d = dst + r;
    if (r < t.rows) {
      const float* s = A + (t.row0 + r) * lda;
      for (int64_t kk = k0; kk < k1; ++kk) d[kk * width] = s[kk];
    } else {
      for (int64_t kk = k0; kk < k1; ++kk) d[kk * width] = 0.0f;
    }
  }
}

// The epilogue of gemm_rows.h (the narrow kernel's, lane for lane).
void write_back(const GemmParams& p, const Tile& t, int64_t j0, int nr, const float* tr) {
  float* C = static_cast<float*>(p.c);
  const int64_t width = t.v * kLanes;
  for (int64_t r = 0; r < t.rows; ++r) {
    float* c = C + (t.row0 + r) * p.ldc + j0;
    if (p.beta == 0.0f) {
      for (int j = 0; j < nr; ++j) c[j] = p.alpha * tr[j * width + r];
    } else {
      for (int j = 0; j < nr; ++j) c[j] = p.alpha * tr[j * width + r] + p.beta * c[j];
    }
  }
}

template <int... V>
constexpr std::array<std::array<MicroFn, kMaxNr + 1>, kMaxV + 1> make_table(std::integer_sequence<int, V...>) {
  return {std::array<MicroFn, kMaxNr + 1>{}, micro_table<V + 1>()...};
}

}  // namespace

void gemm_rows_packed(const GemmParams& p) {
  static constexpr auto table = make_table(std::make_integer_sequence<int, kMaxV>{});

  // Row tiles of A: as few as possible, their vector counts balanced.
  if (p.m > kMaxRows) throw std::invalid_argument("gemm_rows_packed: more than 256 rows");
  const int64_t vectors = (p.m + kLanes - 1) / kLanes;
  const int64_t ntiles = (vectors + kMaxV - 1) / kMaxV;
  Tile tiles[kMaxRows / kLanes];
  int64_t offset = 0, row = 0;
  for (int64_t i = 0; i < ntiles; ++i) {
    Tile& t = tiles[i];
    t.v = static_cast<int>(vectors / ntiles + (i < vectors % ntiles ? 1 : 0));
    t.row0 = row;
    t.rows = std::min<int64_t>(t.v * kLanes, p.m - row);
    t.offset = offset;
    row += t.rows;
    offset += t.v * kLanes * p.k;
  }
  thread_local Scratch scratch;
  float* packed = scratch.get(offset);

  const float* A = static_cast<const float*>(p.a);
  const float* W = static_cast<const float*>(p.b);
  const int64_t blocks = (p.n + kBlock - 1) / kBlock;
  const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), blocks));
#pragma omp parallel num_threads(threads)
  {
    // Packing: each thread a slice of k of every tile.
    const int nt = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t k0 = p.k * me / nt, k1 = p.k * (me + 1) / nt;
    for (int64_t i = 0; i < ntiles; ++i) pack(A, p.lda, tiles[i], packed + tiles[i].offset, k0, k1);
#pragma omp barrier
    alignas(kAlign) float sums[kMaxNr * kMaxV * kLanes];  // one micro-tile of C, transposed
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t j_begin = b * kBlock, j_end = std::min(p.n, j_begin + kBlock);
      for (int64_t i = 0; i < ntiles; ++i) {
        const Tile& tile = tiles[i];
        const int nr_max = S::kNr[tile.v];
        for (int64_t j = j_begin; j < j_end; j += nr_max) {
          const int nr = static_cast<int>(std::min<int64_t>(nr_max, j_end - j));
          const float* pf = W + std::min(j + kBlock, p.n - nr) * p.ldb;  // one block ahead
          table[tile.v][nr](packed + tile.offset, W + j * p.ldb, p.ldb, p.k, sums, pf);
          write_back(p, tile, j, nr, sums);
        }
      }
    }
  }
}

}  // namespace tformer::cpu::TFORMER_CPU_ISA
