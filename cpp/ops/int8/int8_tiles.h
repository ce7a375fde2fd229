// The tiling every SIMD int8 kernel shares: C = epilogue(A_q @ W^T) with W the natural
// (n, k) int8 rows of a Linear weight, read in place (no packing, no row sums).
//
// A micro-tile is MR activation rows x NR weight rows: each step loads MR vectors of A and
// NR vectors of W (kBytes consecutive k each) and accumulates MR*NR int32 vectors
// (Isa::dot); the vectors are summed horizontally once at the end (Isa::hsum, a transpose
// tree). Threads take (row chunk, weight block) tasks: a block of kBlockN weight rows stays
// in L1/L2 while every tile of the chunk passes over it, so a decode step streams each
// weight byte from memory once. The epilogue is the contract's, in its order (4 columns at
// a time with SSE: the same operations per lane).
//
// Templates in an anonymous namespace: each ISA's file gets its own copy, compiled with
// its flags, that the linker never merges with another's.
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <cstdint>
#include <utility>

#include "int8_kernels.h"

namespace tformer::cpu::int8 {
namespace {

constexpr int64_t kBlockN = 64;    // weight rows per task: 64 x k int8 stays in L1/L2
constexpr int64_t kChunkM = 128;   // activation rows per task (the encoder's big m)

// C[i][j] for the tile's sums, by the contract's epilogue; `offset` undoes the + 128 of the
// VNNI kernels' unsigned weights (sum of (w + 128) * q = sum w * q + 128 * sum q), in
// wrapping int32 arithmetic (the true sum always fits; the biased one may not).
template <int NRMAX>
inline void epilogue(const Int8GemmParams& p, const QuantizedRows& a, int64_t i0, int mr, int64_t j0, int nr,
                     const int32_t* sums, bool offset) {
  for (int r = 0; r < mr; ++r) {
    const int64_t i = i0 + r;
    const uint32_t bias128 = offset ? 128u * static_cast<uint32_t>(a.sum[i]) : 0u;
    const float as = a.scale[i];
    float* c = p.c + i * p.ldc + j0;
    for (int t = 0; t < nr; ++t) {
      const int32_t acc = static_cast<int32_t>(static_cast<uint32_t>(sums[r * NRMAX + t]) - bias128);
      float s = static_cast<float>(acc) * (as * p.b_scale[j0 + t]);
      s = p.alpha * s;
      if (p.bias) s = s + p.bias[j0 + t];
      c[t] = s;
    }
  }
}

// sums[r * NR + t] = the (wrapping) int32 dot product of A row r and W row t over k,
// in the kernel's operand encoding. A rows are zero-padded to a multiple of kBytes; W rows
// are not (their last partial vector comes from Isa::load_tail).
// The same for a tile 4 weight rows wide (every full tile: kNr is 4), 4 columns at a time:
// the same float operations in the same order, on 4 lanes.
template <int NRMAX>
inline void epilogue4(const Int8GemmParams& p, const QuantizedRows& a, int64_t i0, int mr, int64_t j0,
                      const int32_t* sums, bool offset) {
  const __m128 bs = _mm_loadu_ps(p.b_scale + j0);
  const __m128 alpha = _mm_set1_ps(p.alpha);
  const __m128 bias = p.bias ? _mm_loadu_ps(p.bias + j0) : _mm_setzero_ps();
  for (int r = 0; r < mr; ++r) {
    const int64_t i = i0 + r;
    __m128i acc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sums + r * NRMAX));
    if (offset) acc = _mm_sub_epi32(acc, _mm_set1_epi32(static_cast<int32_t>(128u * static_cast<uint32_t>(a.sum[i]))));
    __m128 s = _mm_mul_ps(_mm_cvtepi32_ps(acc), _mm_mul_ps(_mm_set1_ps(a.scale[i]), bs));
    s = _mm_mul_ps(alpha, s);
    if (p.bias) s = _mm_add_ps(s, bias);
    _mm_storeu_ps(p.c + i * p.ldc + j0, s);
  }
}

template <class Isa, int MR, int NR>
void micro(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t k, int32_t* sums) {
  using vec = typename Isa::vec;
  vec acc[Isa::kMr * Isa::kNr];
  for (int v = 0; v < Isa::kMr * Isa::kNr; ++v) acc[v] = Isa::zero();
  int64_t kk = 0;
  for (; kk + Isa::kBytes <= k; kk += Isa::kBytes) {
    vec av[MR];
    for (int r = 0; r < MR; ++r) av[r] = Isa::load(a + r * lda + kk);
    for (int t = 0; t < NR; ++t) {
      const vec wv = Isa::load(w + t * ldw + kk);
      const vec wp = Isa::prep(wv);
      for (int r = 0; r < MR; ++r) acc[r * Isa::kNr + t] = Isa::dot(acc[r * Isa::kNr + t], av[r], wp, wv);
    }
  }
  if (kk < k) {
    vec av[MR];
    for (int r = 0; r < MR; ++r) av[r] = Isa::load(a + r * lda + kk);
    for (int t = 0; t < NR; ++t) {
      const vec wv = Isa::load_tail(w + t * ldw + kk, k - kk);
      const vec wp = Isa::prep(wv);
      for (int r = 0; r < MR; ++r) acc[r * Isa::kNr + t] = Isa::dot(acc[r * Isa::kNr + t], av[r], wp, wv);
    }
  }
  Isa::hsum(acc, sums);
}

using MicroFn = void (*)(const int8_t*, int64_t, const int8_t*, int64_t, int64_t, int32_t*);

template <class Isa, int MR, int... NR>
constexpr void fill_row(MicroFn* row, std::integer_sequence<int, NR...>) {
  ((row[NR + 1] = &micro<Isa, MR, NR + 1>), ...);
}

template <class Isa>
struct MicroTable {
  MicroFn fn[Isa::kMr + 1][Isa::kNr + 1] = {};
  constexpr MicroTable() {
    fill<1>();
  }
  template <int MR>
  constexpr void fill() {
    fill_row<Isa, MR>(fn[MR], std::make_integer_sequence<int, Isa::kNr>{});
    if constexpr (MR < Isa::kMr) fill<MR + 1>();
  }
};

template <class Isa>
void run_tiles(const Int8GemmParams& p, const QuantizedRows& a) {
  static constexpr MicroTable<Isa> table;
  const int64_t chunks = (p.m + kChunkM - 1) / kChunkM;
  const int64_t blocks = (p.n + kBlockN - 1) / kBlockN;
  const int64_t tasks = chunks * blocks;
  const bool parallel = p.m * p.n * p.k > 65536 && tasks > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t chunk = task / blocks, block = task % blocks;
    const int64_t i_end = chunk * kChunkM + kChunkM < p.m ? chunk * kChunkM + kChunkM : p.m;
    const int64_t j_end = block * kBlockN + kBlockN < p.n ? block * kBlockN + kBlockN : p.n;
    alignas(64) int32_t sums[Isa::kMr * Isa::kNr];
    for (int64_t i = chunk * kChunkM; i < i_end; i += Isa::kMr) {
      const int mr = static_cast<int>(i_end - i < Isa::kMr ? i_end - i : Isa::kMr);
      for (int64_t j = block * kBlockN; j < j_end; j += Isa::kNr) {
        const int nr = static_cast<int>(j_end - j < Isa::kNr ? j_end - j : Isa::kNr);
        table.fn[mr][nr](a.q + i * a.stride, a.stride, p.b + j * p.ldb, p.ldb, p.k, sums);
        if (nr == 4) epilogue4<Isa::kNr>(p, a, i, mr, j, sums, Isa::kOffset);
        else epilogue<Isa::kNr>(p, a, i, mr, j, nr, sums, Isa::kOffset);
      }
    }
  }
}

}  // namespace
}  // namespace tformer::cpu::int8
