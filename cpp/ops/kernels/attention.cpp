// Fused multi-head attention on the CPU, one tiled pass with an online softmax
// (Milakov & Gimelshein 2018; the FlashAttention schedule): for a tile of queries,
// walk the keys in tiles, keep the running row max m, the running normaliser l and
// the unnormalised output acc, so no (L x L) score matrix is ever stored.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "../cpu_kernels.h"
#include "tformer/ops/attention.h"
#include "tformer/errors.h"
#include "vec_math.h"

namespace tformer::cpu::TFORMER_CPU_ISA {
namespace {

constexpr int64_t kQueryTile = 32;
constexpr int64_t kKeyTile = 64;

struct Workspace {
  std::vector<float> q;     // (kQueryTile, D), pre-scaled queries
  std::vector<float> kt;    // (D, kKeyTile), the key tile transposed
  std::vector<float> s;     // (kQueryTile, kKeyTile), scores then probabilities
  std::vector<float> acc;   // (kQueryTile, D)
  std::vector<float> m, l;  // (kQueryTile)

  explicit Workspace(int64_t d)
      : q(kQueryTile * d), kt(d * kKeyTile), s(kQueryTile * kKeyTile), acc(kQueryTile * d),
        m(kQueryTile), l(kQueryTile) {}
};

// Per-thread workspace, grown on demand and kept: no allocation per call once warm.
Workspace& workspace_for(int64_t head_dim) {
  static thread_local std::unique_ptr<Workspace> w;
  if (!w || static_cast<int64_t>(w->q.size()) < kQueryTile * head_dim) w = std::make_unique<Workspace>(head_dim);
  return *w;
}

// Register-blocked micro-kernels: kRows query rows at a time against kCols columns,
// so the accumulators stay in vector registers (4 x 16 floats: 8 ymm or 4 zmm).
constexpr int64_t kRows = 4;
constexpr int64_t kCols = 16;
static_assert(kQueryTile % kRows == 0 && kKeyTile % kCols == 0, "tiles must hold whole blocks");

// s (kQueryTile, kKeyTile) = q (kQueryTile, D) @ kt (D, kKeyTile), for the first `rows` rows.
inline void tile_scores(float* s, const float* q, const float* kt, int64_t rows, int64_t D) {
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    for (int64_t j0 = 0; j0 < kKeyTile; j0 += kCols) {
      float c[kRows][kCols] = {};
      for (int64_t d = 0; d < D; ++d) {
        const float* k = kt + d * kKeyTile + j0;
        for (int64_t r = 0; r < kRows; ++r) {
          const float qd = q[(i0 + r) * D + d];
#pragma omp simd
          for (int64_t j = 0; j < kCols; ++j) c[r][j] += qd * k[j];
        }
      }
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t j = 0; j < kCols; ++j) s[(i0 + r) * kKeyTile + j0 + j] = c[r][j];
    }
  }
}

// acc (kQueryTile, D) += p (kQueryTile, kKeyTile)[:, :nk] @ v (nk rows of stride v_stride, D).
inline void tile_accumulate(float* acc, const float* p, const float* v, int64_t v_stride, int64_t rows,
                            int64_t nk, int64_t D) {
  const int64_t d_blocked = D / kCols * kCols;
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    for (int64_t d0 = 0; d0 < d_blocked; d0 += kCols) {
      float c[kRows][kCols];
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t d = 0; d < kCols; ++d) c[r][d] = acc[(i0 + r) * D + d0 + d];
      for (int64_t j = 0; j < nk; ++j) {
        const float* vj = v + j * v_stride + d0;
        for (int64_t r = 0; r < kRows; ++r) {
          const float pj = p[(i0 + r) * kKeyTile + j];
#pragma omp simd
          for (int64_t d = 0; d < kCols; ++d) c[r][d] += pj * vj[d];
        }
      }
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t d = 0; d < kCols; ++d) acc[(i0 + r) * D + d0 + d] = c[r][d];
    }
    if (d_blocked == D) continue;
    for (int64_t r = 0; r < kRows; ++r) {  // the columns past the last whole block
      float* ai = acc + (i0 + r) * D;
      for (int64_t j = 0; j < nk; ++j) {
        const float pj = p[(i0 + r) * kKeyTile + j];
        const float* vj = v + j * v_stride;
        for (int64_t d = d_blocked; d < D; ++d) ai[d] += pj * vj[d];
      }
    }
  }
}

// s[j] += rel_bias[origin + k0 + j - i, h] for the n keys k0.. of query row i of batch b (T5's
// relative position bias; ops.cpp checked that every index read is inside the span, or the
// caller guarantees it for per-row origins).
inline void add_rel_bias(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t k0, int64_t n, float* s) {
  const int64_t origin = p.rel_bias_origins ? p.rel_bias_origins[b] : p.rel_bias_origin;
  const float* rb = static_cast<const float*>(p.rel_bias) + (origin + k0 - i) * p.heads + h;
  const int64_t stride = p.heads;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) s[j] += rb[j * stride];
}

// One (batch, head, query tile): queries q0..q1-1.
void attention_tile(const AttentionParams& p, int64_t b, int64_t h, int64_t q0, int64_t q1, Workspace& w) {
  const int64_t D = p.head_dim;
  const int64_t nq = q1 - q0;
  const int64_t rows = (nq + kRows - 1) / kRows * kRows;  // padded rows are zero queries, never written out
  const float* qb = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * D;
  const int64_t kvb = b / p.kv_group;
  const float* kb = static_cast<const float*>(p.k) + kvb * p.k_batch_stride + h * D;
  const float* vb = static_cast<const float*>(p.v) + kvb * p.v_batch_stride + h * D;
  float* ob = static_cast<float*>(p.out) + b * p.out_batch_stride + h * D;

  int64_t kv_end = p.kv_len;
  if (p.kv_lengths) kv_end = std::min<int64_t>(kv_end, std::max<int32_t>(p.kv_lengths[kvb], 0));
  if (p.causal) kv_end = std::min(kv_end, q1 - 1 + p.causal_offset + 1);

  float* qs = w.q.data();
  float* kt = w.kt.data();
  float* acc = w.acc.data();
  float* s = w.s.data();
  std::fill(qs, qs + rows * D, 0.0f);
  std::fill(acc, acc + rows * D, 0.0f);
  for (int64_t i = 0; i < nq; ++i) {
    const float* qi = qb + (q0 + i) * p.q_row_stride;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) qs[i * D + d] = qi[d] * p.scale;
    w.m[i] = -std::numeric_limits<float>::infinity();
    w.l[i] = 0.0f;
  }

  for (int64_t k0 = 0; k0 < kv_end; k0 += kKeyTile) {
    const int64_t nk = std::min(kKeyTile, kv_end - k0);
    for (int64_t j = 0; j < nk; ++j) {
      const float* kj = kb + (k0 + j) * p.k_row_stride;
      for (int64_t d = 0; d < D; ++d) kt[d * kKeyTile + j] = kj[d];
    }
    for (int64_t j = nk; j < kKeyTile; ++j)  // keep the unused columns finite
      for (int64_t d = 0; d < D; ++d) kt[d * kKeyTile + j] = 0.0f;
    tile_scores(s, qs, kt, rows, D);

    // Online softmax, row by row: probabilities in place of the scores, masked keys 0.
    for (int64_t i = 0; i < rows; ++i) {
      float* si = s + i * kKeyTile;
      int64_t valid = i < nq ? nk : 0;
      if (p.causal) valid = std::min(valid, q0 + i + p.causal_offset - k0 + 1);
      if (valid <= 0) {
        std::fill(si, si + kKeyTile, 0.0f);
        continue;
      }
      if (p.rel_bias) add_rel_bias(p, b, h, q0 + i, k0, valid, si);
      float tile_max = si[0];
      for (int64_t j = 1; j < valid; ++j) tile_max = std::max(tile_max, si[j]);
      const float m_new = std::max(w.m[i], tile_max);
      const float alpha = fast_exp(w.m[i] - m_new);  // ~0 on the first tile (m = -inf)
      float row_sum = 0.0f;
#pragma omp simd reduction(+ : row_sum)
      for (int64_t j = 0; j < valid; ++j) {
        const float e = fast_exp(si[j] - m_new);
        si[j] = e;
        row_sum += e;
      }
      std::fill(si + valid, si + kKeyTile, 0.0f);
      w.l[i] = w.l[i] * alpha + row_sum;
      w.m[i] = m_new;
      float* ai = acc + i * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) ai[d] *= alpha;
    }
    tile_accumulate(acc, s, vb + k0 * p.v_row_stride, p.v_row_stride, rows, nk, D);
  }

  if (p.lse_out) {  // training: the backward recomputes the probabilities from it
    float* lse = p.lse_out + (b * p.heads + h) * p.q_len + q0;
    for (int64_t i = 0; i < nq; ++i)
      lse[i] = w.l[i] > 0.0f ? w.m[i] + std::log(w.l[i]) : -std::numeric_limits<float>::infinity();
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* oi = ob + (q0 + i) * p.out_row_stride;
    const float inv = w.l[i] > 0.0f ? 1.0f / w.l[i] : 0.0f;  // a row that sees no key gives 0
    const float* ai = acc + i * D;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) oi[d] = ai[d] * inv;
  }
}

// A decode step reads each query's keys and values from the KV cache (megabytes per
// layer, out of cache), one head's slice of each position, positions a row apart: too
// scattered for the hardware prefetcher, so the slice kAhead positions on is fetched
// while this one is used (measured: bench/bench_decode.py (b)).
constexpr int64_t kAhead = 4;
inline void prefetch_row(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(x + i);
}

// The keys query i of batch b may see: [0, visible_keys).
inline int64_t visible_keys(const AttentionParams& p, int64_t b, int64_t i) {
  int64_t kv_end = p.kv_len;
  if (p.kv_lengths) kv_end = std::min<int64_t>(kv_end, std::max<int32_t>(p.kv_lengths[b / p.kv_group], 0));
  if (p.causal) kv_end = std::min(kv_end, i + p.causal_offset + 1);
  return kv_end;
}

// The key (or value) rows of one (batch, head) as blocks of consecutive rows: one block of
// kv_len rows (contiguous K/V), or the blocks of a paged pool through the row's block table
// (AttentionParams::block_table). Both walk a block's rows with the same loop, so a row's
// arithmetic is the same instruction sequence in both layouts (bit-identical results).
template <bool kPaged>
struct KeyBlocks {
  const float* base;       // column h * head_dim of batch b (contiguous) or of block 0 (paged)
  int64_t block_stride;    // between blocks (paged)
  int64_t row_stride;
  const int32_t* table;    // the row's block ids (paged)
  int64_t size;            // rows per block

  KeyBlocks(const AttentionParams& p, const void* data, int64_t batch_stride, int64_t stride, int64_t b, int64_t h)
      : row_stride(stride) {
    const float* x = static_cast<const float*>(data) + h * p.head_dim;
    if constexpr (kPaged) {
      base = x, block_stride = batch_stride, table = p.block_table + b * p.blocks_per_row, size = p.block_size;
    } else {
      base = x + (b / p.kv_group) * batch_stride, block_stride = 0, table = nullptr, size = p.kv_len;
    }
  }
  // The first row of block n (paged: only for blocks holding a visible key).
  const float* block(int64_t n) const {
    if constexpr (kPaged) return base + static_cast<int64_t>(table[n]) * block_stride;
    else return base;
  }
  // Row j's address, given its block's first row and its index r in the block, where r may
  // run past the block into the next one (the prefetch distance); j is a visible key.
  const float* ahead(const float* blk, int64_t r, int64_t j) const {
    if constexpr (kPaged) {
      if (r >= size) return block(j / size) + (j % size) * row_stride;
    }
    return blk + r * row_stride;
  }
};

inline float dot_product(const float* q, const float* k, int64_t D) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (int64_t d = 0; d < D; ++d) dot += q[d] * k[d];
  return dot;
}

// scores[j] = exp(scale * q . k_j + bias - m) for the kv_end visible keys of row (b, h, i); returns
// their sum and sets *max_out = m (the softmax is scores / sum).
template <bool kPaged>
inline float row_exp_scores(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t kv_end,
                            float* scores, float* max_out) {
  const int64_t D = p.head_dim;
  const float* q = static_cast<const float*>(p.q) + b * p.q_batch_stride + i * p.q_row_stride + h * D;
  const KeyBlocks<kPaged> keys(p, p.k, p.k_batch_stride, p.k_row_stride, b, h);
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j0 = 0; j0 < kv_end; j0 += keys.size) {
    const float* blk = keys.block(j0 / keys.size);
    const int64_t n = std::min(keys.size, kv_end - j0);
    for (int64_t r = 0; r < n; ++r) {
      const int64_t j = j0 + r;
      const float* kj = blk + r * keys.row_stride;
      if (j + kAhead < kv_end) prefetch_row(keys.ahead(blk, r + kAhead, j + kAhead), D);
      scores[j] = dot_product(q, kj, D) * p.scale;
      m = std::max(m, scores[j]);
    }
  }
  if (p.rel_bias) {  // a second pass, so the loop above stays as it is without a bias
    add_rel_bias(p, b, h, i, 0, kv_end, scores);
    m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < kv_end; ++j) m = std::max(m, scores[j]);
  }
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < kv_end; ++j) {
    scores[j] = fast_exp(scores[j] - m);
    sum += scores[j];
  }
  *max_out = m;
  return sum;
}

// One query (a decode step): the query row against its keys directly, no tiles.
template <bool kPaged>
void attention_row(const AttentionParams& p, int64_t b, int64_t h, int64_t i, std::vector<float>& scores) {
  const int64_t D = p.head_dim;
  const KeyBlocks<kPaged> values(p, p.v, p.v_batch_stride, p.v_row_stride, b, h);
  float* o = static_cast<float*>(p.out) + b * p.out_batch_stride + i * p.out_row_stride + h * D;
  const int64_t kv_end = visible_keys(p, b, i);
  std::fill(o, o + D, 0.0f);
  float* lse = p.lse_out ? p.lse_out + (b * p.heads + h) * p.q_len + i : nullptr;
  if (kv_end <= 0) {
    if (lse) *lse = -std::numeric_limits<float>::infinity();
    return;
  }
  if (static_cast<int64_t>(scores.size()) < kv_end) scores.resize(static_cast<size_t>(kv_end));
  float m;
  const float sum = row_exp_scores<kPaged>(p, b, h, i, kv_end, scores.data(), &m);
  const float inv = 1.0f / sum;
  if (lse) *lse = m + std::log(sum);
  for (int64_t j0 = 0; j0 < kv_end; j0 += values.size) {
    const float* blk = values.block(j0 / values.size);
    const int64_t n = std::min(values.size, kv_end - j0);
    for (int64_t r = 0; r < n; ++r) {
      const int64_t j = j0 + r;
      const float pj = scores[j] * inv;
      const float* vj = blk + r * values.row_stride;
      if (j + kAhead < kv_end) prefetch_row(values.ahead(blk, r + kAhead, j + kAhead), D);
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) o[d] += pj * vj[d];
    }
  }
}

// weights_out[b, i, :] = mean over heads of softmax(scale * q_i . k_j + bias), masked keys 0.
// A second, exact pass: it runs only when alignments are asked for (decoding, q_len 1).
template <bool kPaged>
void attention_weights(const AttentionParams& p) {
  const int64_t D = p.head_dim;
#pragma omp parallel for schedule(static) if (p.batch * p.q_len * p.kv_len * p.heads * D > 65536)
  for (int64_t bi = 0; bi < p.batch * p.q_len; ++bi) {
    const int64_t b = bi / p.q_len, i = bi % p.q_len;
    float* w = p.weights_out + bi * p.kv_len;
    std::fill(w, w + p.kv_len, 0.0f);
    const int64_t kv_end = visible_keys(p, b, i);
    if (kv_end <= 0) continue;
    static thread_local std::vector<float> scores;
    if (static_cast<int64_t>(scores.size()) < kv_end) scores.resize(static_cast<size_t>(kv_end));
    for (int64_t h = 0; h < p.heads; ++h) {
      float m;
      const float sum = row_exp_scores<kPaged>(p, b, h, i, kv_end, scores.data(), &m);
      const float inv = 1.0f / (sum * static_cast<float>(p.heads));
#pragma omp simd
      for (int64_t j = 0; j < kv_end; ++j) w[j] += scores[j] * inv;
    }
  }
}

template <bool kPaged>
void one_query_attention(const AttentionParams& p) {
  const int64_t items = p.batch * p.heads * p.q_len;
#pragma omp parallel if (items > 1 && items * p.kv_len * p.head_dim > 32768)
  {
    static thread_local std::vector<float> scores;
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t i = it % p.q_len, bh = it / p.q_len;
      attention_row<kPaged>(p, bh / p.heads, bh % p.heads, i, scores);
    }
  }
  if (p.weights_out) attention_weights<kPaged>(p);
}

}  // namespace

void attention(const AttentionParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu attention supports float32 only, got ", dtype_name(p.dtype));
  // Decode steps (one query): a row against its keys, no tiles. Only q_len 1: the two paths
  // round differently, and a sentence of 2-3 tokens takes the tiled path alone as it does
  // padded inside a longer batch, so a row's result never depends on its batch (int8
  // decoding is bit-identical alone and batched; a 1-token sentence has one key: exact in both).
  // Paged K/V (the engine's decode steps, q_len 1) take the same path through block tables.
  if (p.q_len == 1) {
    if (p.block_table) one_query_attention<true>(p);
    else one_query_attention<false>(p);
    return;
  }
  const int64_t q_tiles = (p.q_len + kQueryTile - 1) / kQueryTile;
  const int64_t items = p.batch * p.heads * q_tiles;
  const bool parallel = items > 1 && p.q_len * p.kv_len * p.head_dim * p.heads * p.batch > 32768;
#pragma omp parallel if (parallel)
  {
    Workspace& w = workspace_for(p.head_dim);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t t = it % q_tiles;
      const int64_t bh = it / q_tiles;
      const int64_t q0 = t * kQueryTile;
      attention_tile(p, bh / p.heads, bh % p.heads, q0, std::min(q0 + kQueryTile, p.q_len), w);
    }
  }
  if (p.weights_out) attention_weights<false>(p);
}

TFORMER_CPU_OP(attention);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
