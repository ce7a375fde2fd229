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
#include <cstring>
#include <utility>

#include "int8_kernels.h"

namespace tformer::cpu::int8 {
namespace {

inline int64_t max_rows(int64_t a, int64_t b) { return a < b ? b : a; }

// A weight row is a short stream (k bytes) that the hardware prefetchers do not pick up
// before it ends: the kernels prefetch the same position of the rows ~kPrefetchBytes ahead
// (the following tiles or panel: a sequential stream through the weight matrix;
// prefetches never fault past its end). Measured on the vocabulary projection (n = 59514,
// k = 512, m = 1): 1.8 ms without, 0.8-0.95 ms with 4-16 KB, one thread.
constexpr int64_t kPrefetchBytes = 8192;
constexpr int64_t kBytesPerLine = 64;
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
void micro(const int8_t* a, int64_t lda, const int8_t* w, int64_t ldw, int64_t k, int64_t pf, int32_t* sums) {
  using vec = typename Isa::vec;
  vec acc[Isa::kMr * Isa::kNr];
  for (int v = 0; v < Isa::kMr * Isa::kNr; ++v) acc[v] = Isa::zero();
  int64_t kk = 0;
  for (; kk + Isa::kBytes <= k; kk += Isa::kBytes) {
    vec av[MR];
    for (int r = 0; r < MR; ++r) av[r] = Isa::load(a + r * lda + kk);
    for (int t = 0; t < NR; ++t) {
      if (kBytesPerLine <= Isa::kBytes || (kk & (kBytesPerLine - 1)) == 0)
        _mm_prefetch(reinterpret_cast<const char*>(w + pf + t * ldw + kk), _MM_HINT_T0);
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

using MicroFn = void (*)(const int8_t*, int64_t, const int8_t*, int64_t, int64_t, int64_t, int32_t*);

// Bytes ahead to prefetch: whole tiles of NR rows, about kPrefetchBytes.
inline int64_t prefetch_offset(int64_t ldw, int nr) {
  const int64_t tiles = (kPrefetchBytes + nr * ldw - 1) / (nr * ldw);
  return tiles * nr * ldw;
}

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

// ---------------------------------------------------------------- many rows (the encoder)
// With many activation rows, the weights are worth reordering: a panel of PW = kPanelVecs
// vectors' worth of weight rows is packed once per call into VNNI order (for each group of
// 4 k: PW rows x 4 bytes, so one vector holds 4 consecutive k of kLanes weight rows), and
// a micro-tile of kPanelMr activation rows broadcasts 4 bytes of a row against those
// vectors: kPanelMr x kPanelVecs accumulators, no horizontal sums, each weight vector
// loaded once per tile. Threads take panels; each packs its own into its scratch.

template <class Isa>
constexpr int64_t panel_cols() { return Isa::kPanelVecs * (Isa::kBytes / 4); }

// Transposes an 8 x 8 block of 4-byte groups: 8 weight rows x 32 bytes (src, row stride
// ld) into 8 groups x 8 rows x 4 bytes (dst, group stride dld).
inline void transpose_8x8_groups(const int8_t* src, int64_t ld, int8_t* dst, int64_t dld) {
  __m256i r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i * ld));
  __m256i t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);      // r0g0 r1g0 r0g1 r1g1 | g4, g5
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);  // r0g2 r1g2 r0g3 r1g3 | g6, g7
  }
  __m256i u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);          // g0: r0..r3 | g4
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);      // g1 | g5
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);  // g2 | g6
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);  // g3 | g7
  }
  for (int g = 0; g < 4; ++g) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + g * dld), _mm256_permute2x128_si256(u[g], u[g + 4], 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + (g + 4) * dld),
                        _mm256_permute2x128_si256(u[g], u[g + 4], 0x31));
  }
}

// panel[g][jj][0..3] = w[j0 + jj][4g .. 4g + 3], zero beyond n rows and k columns: 8 x 8
// blocks of groups by transposes, the edges byte by byte.
template <class Isa>
void pack_panel(const Int8GemmParams& p, int64_t j0, int64_t groups, int8_t* panel) {
  constexpr int64_t pw = panel_cols<Isa>();
  const int64_t rows = p.n - j0 < pw ? p.n - j0 : pw;
  const int64_t full_groups = p.k / 32 * 8;  // groups inside k, in blocks of 8
  const int64_t full_rows = rows / 8 * 8;
  for (int64_t jj = 0; jj < full_rows; jj += 8)
    for (int64_t g = 0; g < full_groups; g += 8) {
      const int8_t* src = p.b + (j0 + jj) * p.ldb + 4 * g;
      if ((g & 15) == 0)  // the same lines of the next panel (this thread's next, or a neighbour's)
        for (int r = 0; r < 8; ++r) _mm_prefetch(reinterpret_cast<const char*>(src + (pw + r) * p.ldb), _MM_HINT_T0);
      transpose_8x8_groups(src, p.ldb, panel + (g * pw + jj) * 4, pw * 4);
    }
  for (int64_t jj = 0; jj < pw; ++jj) {
    const int64_t g0 = jj < full_rows ? full_groups : 0;
    const int8_t* w = p.b + (j0 + jj) * p.ldb;
    for (int64_t g = g0; g < groups; ++g) {
      int8_t* dst = panel + (g * pw + jj) * 4;
      for (int64_t c = 0; c < 4; ++c) dst[c] = (jj < rows && 4 * g + c < p.k) ? w[4 * g + c] : int8_t{0};
    }
  }
}

// sums[r * PW + t] for MR activation rows and the panel's PW weight rows.
template <class Isa, int MR>
void panel_micro(const int8_t* a, int64_t lda, const int8_t* panel, int64_t groups, int32_t* sums) {
  using vec = typename Isa::vec;
  constexpr int NV = Isa::kPanelVecs;
  vec acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = Isa::zero();
  for (int64_t g = 0; g < groups; ++g) {
    vec w[NV], wp[NV];
    for (int v = 0; v < NV; ++v) {
      w[v] = Isa::load(panel + (g * NV + v) * Isa::kBytes);
      wp[v] = Isa::prep(w[v]);
    }
    for (int r = 0; r < MR; ++r) {
      const vec ab = Isa::broadcast4(a + r * lda + 4 * g);
      for (int v = 0; v < NV; ++v) acc[r][v] = Isa::dot(acc[r][v], ab, wp[v], w[v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) Isa::store(sums + r * panel_cols<Isa>() + v * (Isa::kBytes / 4), acc[r][v]);
}

using PanelFn = void (*)(const int8_t*, int64_t, const int8_t*, int64_t, int32_t*);

template <class Isa, int... MR>
constexpr void fill_panels(PanelFn* row, std::integer_sequence<int, MR...>) {
  ((row[MR + 1] = &panel_micro<Isa, MR + 1>), ...);
}

template <class Isa>
struct PanelTable {
  PanelFn fn[Isa::kPanelMr + 1] = {};
  constexpr PanelTable() { fill_panels<Isa>(fn, std::make_integer_sequence<int, Isa::kPanelMr>{}); }
};

template <class Isa>
void run_panels(const Int8GemmParams& p, const QuantizedRows& a) {
  static constexpr PanelTable<Isa> table;
  constexpr int64_t pw = panel_cols<Isa>();
  const int64_t groups = (p.k + 3) / 4;
  const int64_t panels = (p.n + pw - 1) / pw;
#pragma omp parallel for schedule(static) if (panels > 1 && p.m * p.n * p.k > 65536)
  for (int64_t panel = 0; panel < panels; ++panel) {
    int8_t* packed = a.panels + omp_get_thread_num() * a.panel_bytes;
    const int64_t j0 = panel * pw;
    const int64_t cols = p.n - j0 < pw ? p.n - j0 : pw;
    pack_panel<Isa>(p, j0, groups, packed);
    alignas(64) int32_t sums[Isa::kPanelMr * pw];
    for (int64_t i = 0; i < p.m; i += Isa::kPanelMr) {
      const int mr = static_cast<int>(p.m - i < Isa::kPanelMr ? p.m - i : Isa::kPanelMr);
      table.fn[mr](a.q + i * a.stride, a.stride, packed, groups, sums);
      int64_t t = 0;
      for (; t + 4 <= cols; t += 4) epilogue4<pw>(p, a, i, mr, j0 + t, sums + t, Isa::kOffset);
      if (t < cols) epilogue<pw>(p, a, i, mr, j0 + t, static_cast<int>(cols - t), sums + t, Isa::kOffset);
    }
  }
}

// ---------------------------------------------------------------- the kernel
template <class Isa>
void run_tiles(const Int8GemmParams& p, const QuantizedRows& a) {
  static constexpr MicroTable<Isa> table;
  const int64_t chunks = (p.m + kChunkM - 1) / kChunkM;
  const int64_t blocks = (p.n + kBlockN - 1) / kBlockN;
  const int64_t tasks = chunks * blocks;
  const bool parallel = p.m * p.n * p.k > 65536 && tasks > 1;
  const int64_t pf = prefetch_offset(p.ldb, Isa::kNr);
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
        table.fn[mr][nr](a.q + i * a.stride, a.stride, p.b + j * p.ldb, p.ldb, p.k, pf, sums);
        if (nr == 4) epilogue4<Isa::kNr>(p, a, i, mr, j, sums, Isa::kOffset);
        else epilogue<Isa::kNr>(p, a, i, mr, j, nr, sums, Isa::kOffset);
      }
    }
  }
}

}  // namespace
}  // namespace tformer::cpu::int8

namespace tformer::cpu::int8 {
namespace {

// Few rows (decode steps): weights streamed in place; many: packed panels. The crossing is
// measured per kernel (Isa::panel_min_rows(k), single thread, TFORMER_INT8_PANEL_ROWS=1 vs
// 100000): packing costs ~1/m, the in-place kernel's horizontal sums ~1/k.
template <class Isa>
void run(const Int8GemmParams& p, const QuantizedRows& a) {
  const int64_t min_rows = a.panel_min_rows < 0 ? Isa::panel_min_rows(p.k) : a.panel_min_rows;
  if (p.m >= min_rows && a.panels) run_panels<Isa>(p, a);
  else run_tiles<Isa>(p, a);
}

}  // namespace
}  // namespace tformer::cpu::int8
