// Backward of fused attention on the CPU, FlashAttention-2's schedule (Dao 2023, Alg. 2):
// for one (batch, head), walk the keys in tiles (outer) and the queries in tiles (inner),
// recompute the probabilities of the tile from the saved log-sum-exp,
//   P = exp(scale * Q K^T - lse)            (masked keys 0)
//   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - delta),  delta_i = rowsum(dO_i * O_i)
//   dQ += scale * dS K,  dK += scale * dS^T Q,
// so no (L x L) matrix is ever stored: only a (query tile x key tile) block. Each
// (batch, head) is one work item run by one thread, which owns its columns of dq, dk
// and dv: no atomics and no races, and the sums come out in the same order whatever
// the thread count.
// With a relative position bias (T5) the scores are scale * Q K^T + bias[origin + j - i]
// (the saved lse includes it), and drel_bias[origin + j - i, h] += dS[i, j]: each item sums
// its diagonals into its own (span) partial, then the partials are added over the batch in
// batch order (again the same bits whatever the thread count).
#include <algorithm>
#include <cstring>
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
// Register blocks of the tile products: kRows rows by kCols columns of accumulators,
// two vector registers per row: 16 zmm accumulators on AVX-512 (of 32 registers; 2 loads
// and 8 broadcasts per 16 FMAs), 8 ymm on AVX2 (of 16).
#if defined(__AVX512F__)
constexpr int64_t kRows = 8;
constexpr int64_t kCols = 32;
#else
constexpr int64_t kRows = 4;
constexpr int64_t kCols = 16;
#endif
static_assert(kQueryTile % kRows == 0 && kKeyTile % kCols == 0 && kKeyTile % kRows == 0, "whole blocks");

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

struct Workspace {
  std::vector<float> qs, dout, dq;  // (q_pad, D): queries * scale, dO, dQ / scale, of one (b, h)
  std::vector<float> lse, delta;    // (q_pad)
  std::vector<float> kt, vt;        // (D, kKeyTile): the key / value tile, transposed
  std::vector<float> p, ds;         // (kQueryTile, kKeyTile): P, then dP and dS
  std::vector<float> dk, dv;        // (kKeyTile, D)
  std::vector<float> bias;          // (span): the relative position bias of this head

  void reserve(int64_t q_pad, int64_t D) {
    auto grow = [](std::vector<float>& v, int64_t n) {
      if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
    };
    grow(qs, q_pad * D);
    grow(dout, q_pad * D);
    grow(dq, q_pad * D);
    grow(lse, q_pad);
    grow(delta, q_pad);
    grow(kt, D * kKeyTile);
    grow(vt, D * kKeyTile);
    grow(p, kQueryTile * kKeyTile);
    grow(ds, kQueryTile * kKeyTile);
    grow(dk, kKeyTile * D);
    grow(dv, kKeyTile * D);
  }
};

// GCC's generic vectors: 8 floats, lowered to whatever the ISA has (one ymm on AVX2).
typedef float Vec8 __attribute__((vector_size(32)));
typedef int32_t Idx8 __attribute__((vector_size(32)));

// dst (8, 8) with row stride ldd = src (8, 8)^T with row stride lds, in registers:
// three rounds of two-source shuffles (unpack, pairs, halves) instead of 64 scalar
// stores to 8 rows.
inline void transpose8x8(float* dst, int64_t ldd, const float* src, int64_t lds) {
  Vec8 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) std::memcpy(&r[i], src + i * lds, sizeof(Vec8));
  const Idx8 lo1 = {0, 8, 1, 9, 4, 12, 5, 13}, hi1 = {2, 10, 3, 11, 6, 14, 7, 15};
  const Idx8 lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
  const Idx8 lo3 = {0, 1, 2, 3, 8, 9, 10, 11}, hi3 = {4, 5, 6, 7, 12, 13, 14, 15};
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shuffle(r[i], r[i + 1], lo1);  // r_i[0] r_i+1[0] r_i[1] r_i+1[1] | [4] [5]
    t[i + 1] = __builtin_shuffle(r[i], r[i + 1], hi1);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = __builtin_shuffle(t[i], t[i + 2], lo2);  // column 0 of rows i..i+3 | column 4
    u[i + 1] = __builtin_shuffle(t[i], t[i + 2], hi2);
    u[i + 2] = __builtin_shuffle(t[i + 1], t[i + 3], lo2);
    u[i + 3] = __builtin_shuffle(t[i + 1], t[i + 3], hi2);
  }
  for (int c = 0; c < 4; ++c) {
    const Vec8 a = __builtin_shuffle(u[c], u[c + 4], lo3), b = __builtin_shuffle(u[c], u[c + 4], hi3);
    std::memcpy(dst + c * ldd, &a, sizeof(Vec8));
    std::memcpy(dst + (c + 4) * ldd, &b, sizeof(Vec8));
  }
}

// dst (cols, rows) with row stride ldd = src (rows, cols)^T with row stride lds.
inline void transpose(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) {
  const int64_t rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
  for (int64_t i = 0; i < rows8; i += 8)
    for (int64_t j = 0; j < cols8; j += 8) transpose8x8(dst + j * ldd + i, ldd, src + i * lds + j, lds);
  for (int64_t i = 0; i < rows; ++i)  // the edges
    for (int64_t j = i < rows8 ? cols8 : 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

// c (rows, cols) = a (rows, K) @ bt (K, cols); rows % kRows == 0, cols % kCols == 0.
inline void tile_mul(float* c, int64_t ldc, const float* a, int64_t lda, const float* bt, int64_t ldb,
                     int64_t rows, int64_t cols, int64_t K) {
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    for (int64_t j0 = 0; j0 < cols; j0 += kCols) {
      float acc[kRows][kCols] = {};
      for (int64_t k = 0; k < K; ++k) {
        const float* bk = bt + k * ldb + j0;
        for (int64_t r = 0; r < kRows; ++r) {
          const float ar = a[(i0 + r) * lda + k];
#pragma omp simd
          for (int64_t j = 0; j < kCols; ++j) acc[r][j] += ar * bk[j];
        }
      }
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t j = 0; j < kCols; ++j) c[(i0 + r) * ldc + j0 + j] = acc[r][j];
    }
  }
}

// c[i0:i0+kRows, d0:d0+W] += op(a) (rows, K) @ b (K, n)[:, d0:d0+W], op(a)[r][k] =
// a[k * lda + r] when TransA, else a[r * lda + k].
template <bool TransA, int64_t W>
inline void block_mul_add(float* c, int64_t ldc, const float* a, int64_t lda, const float* b, int64_t ldb,
                          int64_t i0, int64_t d0, int64_t K) {
  float acc[kRows][W];
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t d = 0; d < W; ++d) acc[r][d] = c[(i0 + r) * ldc + d0 + d];
  for (int64_t k = 0; k < K; ++k) {
    const float* bk = b + k * ldb + d0;
    for (int64_t r = 0; r < kRows; ++r) {
      const float ar = TransA ? a[k * lda + i0 + r] : a[(i0 + r) * lda + k];
#pragma omp simd
      for (int64_t d = 0; d < W; ++d) acc[r][d] += ar * bk[d];
    }
  }
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t d = 0; d < W; ++d) c[(i0 + r) * ldc + d0 + d] = acc[r][d];
}

// c (rows, n) += op(a) (rows, K) @ b (K, n); rows % kRows == 0, any n: blocks of kCols
// columns, then of 16 (head dims such as 80) and 8, then one column at a time.
template <bool TransA>
inline void tile_mul_add(float* c, int64_t ldc, const float* a, int64_t lda, const float* b, int64_t ldb,
                         int64_t rows, int64_t K, int64_t n) {
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    int64_t d0 = 0;
    for (; d0 + kCols <= n; d0 += kCols) block_mul_add<TransA, kCols>(c, ldc, a, lda, b, ldb, i0, d0, K);
    if constexpr (kCols > 16) {
      for (; d0 + 16 <= n; d0 += 16) block_mul_add<TransA, 16>(c, ldc, a, lda, b, ldb, i0, d0, K);
    }
    if (d0 + 8 <= n) {
      block_mul_add<TransA, 8>(c, ldc, a, lda, b, ldb, i0, d0, K);
      d0 += 8;
    }
    if (d0 == n) continue;
    for (int64_t r = 0; r < kRows; ++r) {  // the columns past the last whole block
      float* cr = c + (i0 + r) * ldc;
      for (int64_t k = 0; k < K; ++k) {
        const float ar = TransA ? a[k * lda + i0 + r] : a[(i0 + r) * lda + k];
        const float* bk = b + k * ldb;
        for (int64_t d = d0; d < n; ++d) cr[d] += ar * bk[d];
      }
    }
  }
}

// One (batch, head); dbias (span) receives this item's sums of dS along the diagonals
// (with a relative position bias and drel_bias asked for), else null.
void backward_head(const AttentionBackwardParams& bp, int64_t b, int64_t h, Workspace& w, float* dbias) {
  const AttentionParams& p = bp.fwd;
  const int64_t D = p.head_dim, Lq = p.q_len, Lk = p.kv_len;
  const int64_t q_pad = round_up(Lq, kRows);
  w.reserve(q_pad, D);
  const float* qb = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * D;
  const float* kb = static_cast<const float*>(p.k) + b * p.k_batch_stride + h * D;
  const float* vb = static_cast<const float*>(p.v) + b * p.v_batch_stride + h * D;
  const float* ob = static_cast<const float*>(p.out) + b * p.out_batch_stride + h * D;
  const float* dob = static_cast<const float*>(bp.dout) + b * bp.dout_batch_stride + h * D;
  const float* lse_b = bp.lse + (b * p.heads + h) * Lq;
  float* dqb = static_cast<float*>(bp.dq) + b * bp.dq_batch_stride + h * D;
  float* dkb = static_cast<float*>(bp.dk) + b * bp.dk_batch_stride + h * D;
  float* dvb = static_cast<float*>(bp.dv) + b * bp.dv_batch_stride + h * D;

  // This head's bias column, contiguous: row i's keys read bias[origin + j - i], j = 0, 1, ...
  const float* bias = nullptr;
  if (p.rel_bias) {
    if (static_cast<int64_t>(w.bias.size()) < p.rel_bias_span) w.bias.resize(static_cast<size_t>(p.rel_bias_span));
    const float* rb = static_cast<const float*>(p.rel_bias);
    for (int64_t t = 0; t < p.rel_bias_span; ++t) w.bias[t] = rb[t * p.heads + h];
    bias = w.bias.data();
  }
  if (dbias) std::fill(dbias, dbias + p.rel_bias_span, 0.0f);

  int64_t kv_end = Lk;
  if (p.kv_lengths) kv_end = std::min<int64_t>(kv_end, std::max<int32_t>(p.kv_lengths[b], 0));

  // The (b, h) slices of Q (pre-scaled, as the forward), dO, lse and delta, padded with
  // zero rows to whole register blocks.
  float* qs = w.qs.data();
  float* dos = w.dout.data();
  float* dq = w.dq.data();
  std::fill(qs + Lq * D, qs + q_pad * D, 0.0f);
  std::fill(dos + Lq * D, dos + q_pad * D, 0.0f);
  std::fill(dq, dq + q_pad * D, 0.0f);
  for (int64_t i = 0; i < Lq; ++i) {
    const float* qi = qb + i * p.q_row_stride;
    const float* doi = dob + i * bp.dout_row_stride;
    const float* oi = ob + i * p.out_row_stride;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t d = 0; d < D; ++d) {
      qs[i * D + d] = qi[d] * p.scale;
      dos[i * D + d] = doi[d];
      dot += doi[d] * oi[d];
    }
    w.delta[i] = dot;
    w.lse[i] = lse_b[i];
  }

  float* kt = w.kt.data();
  float* vt = w.vt.data();
  float* P = w.p.data();
  float* dS = w.ds.data();
  float* dk = w.dk.data();
  float* dv = w.dv.data();
  for (int64_t k0 = 0; k0 < Lk; k0 += kKeyTile) {
    const int64_t tile_keys = std::min(kKeyTile, Lk - k0);  // rows of dk / dv to write
    const int64_t nk = std::max<int64_t>(0, std::min(tile_keys, kv_end - k0));  // unmasked by length
    const int64_t k_rows = round_up(nk, kRows);
    std::fill(dk, dk + k_rows * D, 0.0f);
    std::fill(dv, dv + k_rows * D, 0.0f);
    // The first query that sees key k0 (causal: j <= i + offset).
    int64_t q_first = 0;
    if (p.causal) q_first = std::max<int64_t>(0, k0 - p.causal_offset);
    if (nk > 0 && q_first < Lq) {
      transpose(kt, kKeyTile, kb + k0 * p.k_row_stride, p.k_row_stride, nk, D);
      transpose(vt, kKeyTile, vb + k0 * p.v_row_stride, p.v_row_stride, nk, D);
      for (int64_t d = 0; d < D; ++d) {  // unused columns stay finite
        std::fill(kt + d * kKeyTile + nk, kt + (d + 1) * kKeyTile, 0.0f);
        std::fill(vt + d * kKeyTile + nk, vt + (d + 1) * kKeyTile, 0.0f);
      }
    }
    for (int64_t q0 = nk > 0 ? q_first / kQueryTile * kQueryTile : Lq; q0 < Lq; q0 += kQueryTile) {
      const int64_t nq = std::min(kQueryTile, Lq - q0);
      const int64_t rows = round_up(nq, kRows);
      const float* qt = qs + q0 * D;
      const float* dot = dos + q0 * D;
      tile_mul(P, kKeyTile, qt, D, kt, kKeyTile, rows, kKeyTile, D);  // scores
      int64_t valid_keys[kQueryTile];
      for (int64_t i = 0; i < rows; ++i) {  // P = exp(s (+ bias) - lse), masked keys 0
        float* pi = P + i * kKeyTile;
        int64_t valid = i < nq ? nk : 0;
        if (p.causal) valid = std::min(valid, q0 + i + p.causal_offset - k0 + 1);
        valid = std::max<int64_t>(valid, 0);
        valid_keys[i] = valid;
        const float lse = valid > 0 ? w.lse[q0 + i] : 0.0f;
        if (bias && valid > 0) {
          const float* bi = bias + (p.rel_bias_origin + k0 - q0 - i);  // only [0, valid) is read
#pragma omp simd
          for (int64_t j = 0; j < valid; ++j) pi[j] = fast_exp(pi[j] + bi[j] - lse);
        } else {
#pragma omp simd
          for (int64_t j = 0; j < valid; ++j) pi[j] = fast_exp(pi[j] - lse);
        }
        std::fill(pi + valid, pi + kKeyTile, 0.0f);
      }
      tile_mul_add<true>(dv, D, P, kKeyTile, dot, D, k_rows, rows, D);  // dV += P^T dO
      tile_mul(dS, kKeyTile, dot, D, vt, kKeyTile, rows, kKeyTile, D);  // dP = dO V^T
      for (int64_t i = 0; i < rows; ++i) {                               // dS = P (dP - delta)
        const float di = i < nq ? w.delta[q0 + i] : 0.0f;
        const float* pi = P + i * kKeyTile;
        float* si = dS + i * kKeyTile;
#pragma omp simd
        for (int64_t j = 0; j < kKeyTile; ++j) si[j] = pi[j] * (si[j] - di);
        if (dbias && valid_keys[i] > 0) {  // the bias entry of (i, j) is the one row i read for key j
          float* dbi = dbias + (p.rel_bias_origin + k0 - q0 - i);
#pragma omp simd
          for (int64_t j = 0; j < valid_keys[i]; ++j) dbi[j] += si[j];
        }
      }
      // dQ += dS K (the scale is applied once at the end); dK += dS^T (scale Q).
      tile_mul_add<false>(dq + q0 * D, D, dS, kKeyTile, kb + k0 * p.k_row_stride, p.k_row_stride, rows, nk, D);
      tile_mul_add<true>(dk, D, dS, kKeyTile, qt, D, k_rows, rows, D);
    }
    for (int64_t j = 0; j < tile_keys; ++j) {  // keys past the length get zero gradients
      float* dkj = dkb + (k0 + j) * bp.dk_row_stride;
      float* dvj = dvb + (k0 + j) * bp.dv_row_stride;
      if (j < nk) {
        std::copy(dk + j * D, dk + (j + 1) * D, dkj);
        std::copy(dv + j * D, dv + (j + 1) * D, dvj);
      } else {
        std::fill(dkj, dkj + D, 0.0f);
        std::fill(dvj, dvj + D, 0.0f);
      }
    }
  }
  for (int64_t i = 0; i < Lq; ++i) {
    float* dqi = dqb + i * bp.dq_row_stride;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) dqi[d] = dq[i * D + d] * p.scale;
  }
}

}  // namespace

void attention_backward(const AttentionBackwardParams& p) {
  if (p.fwd.dtype != DType::f32)
    throw_type_error("cpu attention_backward supports float32 only, got ", dtype_name(p.fwd.dtype));
  if (p.fwd.kv_group != 1) throw_value_error("cpu attention_backward: kv_group must be 1, got ", p.fwd.kv_group);
  const int64_t items = p.fwd.batch * p.fwd.heads;
  const bool parallel = items > 1 && p.fwd.q_len * p.fwd.kv_len * p.fwd.head_dim * items > 32768;
  // drel_bias: one (span) partial per (batch, head) item, in the calling thread's buffer.
  const bool dbias = p.fwd.rel_bias && p.drel_bias;
  const int64_t span = p.fwd.rel_bias_span;
  static thread_local std::vector<float> partials;
  if (dbias && partials.size() < static_cast<size_t>(items * span)) partials.resize(static_cast<size_t>(items * span));
  float* part = dbias ? partials.data() : nullptr;  // the team shares this thread's buffer
#pragma omp parallel if (parallel)
  {
    static thread_local std::unique_ptr<Workspace> w;
    if (!w) w = std::make_unique<Workspace>();
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it)
      backward_head(p, it / p.fwd.heads, it % p.fwd.heads, *w, part ? part + it * span : nullptr);
    if (dbias) {  // drel_bias[t, h] += the items' partials, batch by batch
      const int64_t heads = p.fwd.heads;
#pragma omp for schedule(static)
      for (int64_t t = 0; t < span; ++t)
        for (int64_t h = 0; h < heads; ++h) {
          float sum = p.drel_bias[t * heads + h];
          for (int64_t b = 0; b < p.fwd.batch; ++b) sum += part[(b * heads + h) * span + t];
          p.drel_bias[t * heads + h] = sum;
        }
    }
  }
}

TFORMER_CPU_OP(attention_backward);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
