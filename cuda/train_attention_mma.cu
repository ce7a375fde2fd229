// Backward of fused attention on tensor cores (mma.sync m16n8k16, f16 / bf16 inputs, fp32
// accumulation): the same contract and recomputation as train_attention.cu's CUDA-core
// kernels (FlashAttention-2, Dao 2023), which keep f32, misaligned layouts and odd head dims.
//   P = exp2(S * scale * log2e - lse * log2e),  dV = P^T dO,  dP = dO V^T,
//   dS = P * (dP - delta),  dK = scale dS^T Q,  dQ = scale dS K,  delta_i = rowsum(dO_i * O_i).
// P and scale * dS are rounded to the input type for their products (as FlashAttention
// does); scaling dS before the rounding keeps f16 further from overflow (by 1 / scale).
// Three kernels, no atomics (deterministic): a stats kernel (delta and lse * log2e, each
// (batch, head) row padded to a multiple of 64 queries so the dK/dV kernel streams them
// with cp.async like the tiles); a dK/dV kernel (one block per 64 keys, walking the query
// tiles that see them); a dQ kernel (one block per 64 queries, walking the key tiles they
// see). dQ recomputes S and dP instead of atomics from the dK/dV kernel, as the CUDA-core
// version does: fixed summation order, no fp32 dQ buffer.
//
// Why no transposed P / dS goes through shared memory: each warp owns 16 rows of its
// block's side, and the scores are computed with THAT side as the mma's M dimension. In the
// dK/dV kernel that side is the keys, so the warp computes S^T = K Q^T and dP^T = V dO^T
// directly: the accumulator fragments of P^T and dS^T (16 keys x 16 queries) are, re-packed
// with pack2, exactly the A fragments of dV += P^T dO and dK += dS^T Q (C layout rows g /
// g + 8, columns 2t.. equals A layout rows g / g + 8, k 2t..). Their B operands (dO, Q as
// (k = query, n = dim) row-major tiles) come from ldmatrix.trans of the tiles already in
// shared memory. In the dQ kernel the side is the queries: S = Q K^T, and dS is the A
// fragment of dQ += dS K with K by ldmatrix.trans. So every product is an mma, P and dS
// never leave registers, and no barrier separates the score and gradient products.
// The warp walks the streamed tile 16 rows (one mma k-step) at a time, so S and dP need
// 16 registers whatever the tile size; lse / delta vary along the columns in the dK/dV
// kernel (read from the staged tile), along the rows in the dQ kernel (registers).
//
// Resources (head dim D padded to 32/64/96/128, a template parameter): 4 warps; the
// streamed tiles are double-buffered by cp.async (the next tile loads while this one is
// used). D <= 64: streamed tiles of 64 rows and the warp's own A fragments (K, V or Q, dO)
// held in registers; D >= 96: 32-row tiles (the smem fits sm_86/89's 99 KiB) and the A
// fragments re-read by ldmatrix (the dK, dV accumulators already take D registers).
// Shared-memory rows are padded by 16 bytes: 8 consecutive rows of an ldmatrix then fall
// in distinct banks. ptxas, sm_80-90: dK/dV 100-234 registers (D 32-128; 2 blocks of 4 warps
// per SM at D 128), dQ 80-128, no spills; shared memory 30-69 KiB per block.
// rel_bias (T5): a template flag of both kernels, the bias joins the recomputed scores;
// with bp.drel_bias the dQ kernel sums dS per diagonal (key - query) of its 64-query block
// and key tile in shared memory and adds the sums to drel_bias by float atomicAdd after
// the tile's closing barrier (drel_bias's order of additions may vary in the last bits).
// Requirements (else train_attention.cu's kernels run): f16 / bf16, head_dim a multiple
// of 8 and <= 128, every pointer and stride 16-byte aligned.
#include <cmath>
#include <cstdint>
#include <string>

#include "attention_keys.cuh"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "launch_util.h"
#include "mma.cuh"
#include "ops.h"
#include "reduce.cuh"

namespace tformer::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = 16 * kWarps;  // rows of the block's own side: 16 per warp (the mma's M)
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kStatsWarps = 8;

// Rows of a streamed tile, the shared-memory row pitch (elements), and whether the warp's
// own A fragments live in registers.
template <int D>
__host__ __device__ constexpr int stream_rows() { return D <= 64 ? 64 : 32; }
template <int D>
__host__ __device__ constexpr int pitch() { return D + 8; }
template <int D>
__host__ __device__ constexpr bool frags_in_registers() { return D <= 64; }

// Own rows (two tiles of kRows) + two double-buffered streamed tiles, 16-bit elements;
// the dK/dV kernel also stages lse / delta of its query tile (double-buffered floats).
template <int D>
constexpr size_t dq_smem_bytes() { return size_t(2 * kRows + 4 * stream_rows<D>()) * pitch<D>() * 2; }
template <int D>
constexpr size_t dkdv_smem_bytes() { return dq_smem_bytes<D>() + 4 * stream_rows<D>() * sizeof(float); }


__device__ __forceinline__ int clamp16(int64_t x) { return static_cast<int>(min64(max64(x, -16), 16)); }

// Which (query q_base + qi, key k_base + kj) pairs of a 16 x 16 chunk are visible, in
// int32 offsets worked out once per chunk; `full` (warp-uniform) skips the tests.
struct ChunkMask {
  int q_left, k_left, diag;
  bool causal, full;
  __device__ __forceinline__ ChunkMask(const AttentionParams& p, int64_t q_base, int64_t k_base, int64_t kv_end) {
    q_left = clamp16(p.q_len - q_base), k_left = clamp16(kv_end - k_base);
    diag = clamp16(q_base + p.causal_offset - k_base);  // visible iff kj - qi <= diag (kj - qi in [-15, 15])
    causal = p.causal;
    full = q_left == 16 && k_left == 16 && (!causal || diag >= 15);
  }
  __device__ __forceinline__ bool operator()(int qi, int kj) const {
    return full || (qi < q_left && kj < k_left && (!causal || kj - qi <= diag));
  }
};

// Rows [r0, r0 + Rows) of a head slice (row stride `stride`) into shared memory (pitch
// pitch<D>()) by cp.async, zeros past row_end and past head_dim (a multiple of 8).
template <int D, int Rows, typename T>
__device__ __forceinline__ void load_rows_async(T* dst, const T* src, int64_t stride, int64_t r0, int64_t row_end,
                                                int head_dim) {
  constexpr int kPieces = D / 8;  // 16-byte pieces of a row
  for (int idx = threadIdx.x; idx < Rows * kPieces; idx += kThreads) {
    const int r = idx / kPieces, c = idx % kPieces;
    const int64_t row = r0 + r;
    const bool valid = row < row_end && c * 8 < head_dim;
    mma::cp_async_16(dst + r * pitch<D>() + c * 8, valid ? src + row * stride + c * 8 : src, valid);
  }
}

// Fragments from row-major shared tiles (pitch P elements), see mma.cuh:
// A (16 rows x 16 k) at column `col`;
template <int P, typename T>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const T* rows, int col, int lane) {
  mma::ldmatrix_x4(a, rows + (lane % 16) * P + col + (lane / 16) * 8);
}
// B of two n-blocks from a (n, k) tile: rows 0-15 are n, columns col.. are k;
template <int P, typename T>
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[4], const T* rows, int col, int lane) {
  mma::ldmatrix_x4(b, rows + ((lane / 16) * 8 + lane % 8) * P + col + ((lane / 8) % 2) * 8);
}
// B of two n-blocks from a (k, n) tile: rows 0-15 are k, columns col.. are n.
template <int P, typename T>
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[4], const T* rows, int col, int lane) {
  mma::ldmatrix_x4_trans(b, rows + (lane % 16) * P + col + (lane / 16) * 8);
}

// The warp's own 16 rows as A fragments over the head dim: in registers, or re-read.
template <typename T, int D, bool InRegisters = frags_in_registers<D>()>
struct RowFragments {
  uint32_t f[D / 16][4];
  __device__ __forceinline__ void init(const T* rows, int lane) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) load_a<pitch<D>()>(f[kk], rows, kk * 16, lane);
  }
  __device__ __forceinline__ void get(uint32_t (&a)[4], int kk, int) const {
#pragma unroll
    for (int r = 0; r < 4; ++r) a[r] = f[kk][r];
  }
};
template <typename T, int D>
struct RowFragments<T, D, false> {
  const T* rows;
  __device__ __forceinline__ void init(const T* r, int) { rows = r; }
  __device__ __forceinline__ void get(uint32_t (&a)[4], int kk, int lane) const {
    load_a<pitch<D>()>(a, rows, kk * 16, lane);
  }
};

// s (16 x 16: two 8-column n-blocks) = X Y^T over D, X the warp's rows, Y 16 rows of a tile.
template <typename T, int D>
__device__ __forceinline__ void scores(float (&s)[2][4], const RowFragments<T, D>& x, const T* y, int lane) {
#pragma unroll
  for (int nb = 0; nb < 2; ++nb)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[nb][e] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[4], b[4];
    x.get(a, kk, lane);
    load_b_nk<pitch<D>()>(b, y, kk * 16, lane);
    const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
    mma::mma_16816<T>(s[0], a, b0);
    mma::mma_16816<T>(s[1], a, b1);
  }
}

// acc (16 x D) += A (16 x 16, from accumulators) . Y (16 rows of a tile, k) as (k, n = dims).
template <typename T, int D>
__device__ __forceinline__ void accumulate(float (&acc)[D / 8][4], const uint32_t (&a)[4], const T* y, int lane) {
#pragma unroll
  for (int nd = 0; nd < D / 16; ++nd) {
    uint32_t b[4];
    load_b_kn<pitch<D>()>(b, y, nd * 16, lane);
    const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
    mma::mma_16816<T>(acc[2 * nd], a, b0);
    mma::mma_16816<T>(acc[2 * nd + 1], a, b1);
  }
}

// A fragment of a 16 x 16 accumulator pair (rows g / g + 8, columns 2t.. of each n-block).
template <typename T>
__device__ __forceinline__ void pack_a(uint32_t (&a)[4], const float (&x)[2][4]) {
  a[0] = mma::pack2<T>(x[0][0], x[0][1]), a[1] = mma::pack2<T>(x[0][2], x[0][3]);
  a[2] = mma::pack2<T>(x[1][0], x[1][1]), a[3] = mma::pack2<T>(x[1][2], x[1][3]);
}

// Writes a warp's 16 x D accumulator to rows [row0, row0 + 16) below row_end.
template <typename T, int D>
__device__ __forceinline__ void store_rows(T* out, int64_t stride, const float (&acc)[D / 8][4], int64_t row0,
                                           int64_t row_end, int head_dim, int lane) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd) {
    const int col = nd * 8 + 2 * t;
    if (col >= head_dim) continue;  // head_dim is a multiple of 8: pairs are whole
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = row0 + g + 8 * half;
      if (row < row_end)
        *reinterpret_cast<uint32_t*>(out + row * stride + col) =
            mma::pack2<T>(acc[nd][2 * half], acc[nd][2 * half + 1]);
    }
  }
}

// One (batch, head)'s slices of the inputs.
template <typename T>
struct Head {
  const T *q, *k, *v, *dout;
  int64_t kv_end;
  __device__ __forceinline__ Head(const AttentionBackwardParams& bp, int64_t b, int64_t h) {
    const AttentionParams& p = bp.fwd;
    q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.head_dim;
    k = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * p.head_dim;
    v = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.head_dim;
    dout = static_cast<const T*>(bp.dout) + b * bp.dout_batch_stride + h * p.head_dim;
    kv_end = keys_of_batch(p, b);
  }
};

}  // namespace

// ---------------------------------------------------------------- kernels

// stats[0][bh][i] = lse * log2e, stats[1][bh][i] = scale * rowsum(dO * O) for i < q_len,
// zeros up to q_pad; one warp per row.
template <typename T>
__global__ void __launch_bounds__(kStatsWarps * 32)
    attention_mma_stats_kernel(const AttentionBackwardParams bp, int64_t q_pad, float* stats) {
  const AttentionParams& p = bp.fwd;
  const int64_t rows = p.batch * p.heads * q_pad;
  const int64_t row = int64_t(blockIdx.x) * kStatsWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;  // warp-uniform
  const int64_t i = row % q_pad, bh = row / q_pad, h = bh % p.heads, b = bh / p.heads;
  float dot = 0.0f, lse2 = 0.0f;
  if (i < p.q_len) {
    const T* o = static_cast<const T*>(p.out) + b * p.out_batch_stride + i * p.out_row_stride + h * p.head_dim;
    const T* dout =
        static_cast<const T*>(bp.dout) + b * bp.dout_batch_stride + i * bp.dout_row_stride + h * p.head_dim;
    for (int64_t d = lane; d < p.head_dim; d += 32) dot = fmaf(to_float(dout[d]), to_float(o[d]), dot);
    lse2 = bp.lse[bh * p.q_len + i] * kLog2e;  // -inf for a row that sees no key
  }
  dot = warp_sum(dot);
  if (lane == 0) stats[row] = lse2, stats[rows + row] = dot * p.scale;
}

// dK and dV of keys [k0, k0 + 64) of one (batch, head); grid (key tiles, heads, batch).
template <typename T, int D, bool kRelBias>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_mma_kernel(const AttentionBackwardParams bp, const float* stats, int64_t q_pad) {
  constexpr int M = stream_rows<D>(), P = pitch<D>();
  const AttentionParams& p = bp.fwd;
  extern __shared__ float4 smem[];
  float* lse_s = reinterpret_cast<float*>(smem);  // [2][M]: lse * log2e of the query tile
  float* delta_s = lse_s + 2 * M;                 // [2][M]: its scale * delta
  T* k_s = reinterpret_cast<T*>(delta_s + 2 * M);  // (kRows, P): the block's keys
  T* v_s = k_s + kRows * P;                        // (kRows, P): their values
  T* q_s = v_s + kRows * P;                        // [2](M, P): the query tile
  T* do_s = q_s + 2 * M * P;                       // [2](M, P): its dO

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane / 4, t = lane % 4;
  const int64_t b = blockIdx.z, h = blockIdx.y, k0 = int64_t(blockIdx.x) * kRows;
  const int head_dim = static_cast<int>(p.head_dim);
  const Head<T> head(bp, b, h);
  const int64_t kv_end = head.kv_end, bh = b * p.heads + h;
  const float* lse2 = stats + bh * q_pad;
  const float* delta = stats + p.batch * p.heads * q_pad + bh * q_pad;

  // Query tiles that can see a key of the block: from the first that sees key k0 (causal).
  int64_t q_begin = 0;
  if (p.causal) q_begin = max64(0, k0 - p.causal_offset) / M * M;
  if (k0 >= kv_end) q_begin = p.q_len;  // no visible key here: zero gradients

  auto load_query_tile = [&](int64_t q0, int buf) {
    load_rows_async<D, M>(q_s + buf * M * P, head.q, p.q_row_stride, q0, p.q_len, head_dim);
    load_rows_async<D, M>(do_s + buf * M * P, head.dout, bp.dout_row_stride, q0, p.q_len, head_dim);
    if (tid < M / 4) mma::cp_async_16(lse_s + buf * M + 4 * tid, lse2 + q0 + 4 * tid, true);
    else if (tid < M / 2) mma::cp_async_16(delta_s + buf * M + 4 * (tid - M / 4), delta + q0 + 4 * (tid - M / 4), true);
  };
  load_rows_async<D, kRows>(k_s, head.k, p.k_row_stride, k0, kv_end, head_dim);
  load_rows_async<D, kRows>(v_s, head.v, p.v_row_stride, k0, kv_end, head_dim);
  if (q_begin < p.q_len) load_query_tile(q_begin, 0);
  mma::cp_async_commit();
  mma::cp_async_wait<0>();
  __syncthreads();

  const int64_t key_w = k0 + warp * 16;  // this warp's first key
  RowFragments<T, D> kf, vf;
  kf.init(k_s + warp * 16 * P, lane);
  vf.init(v_s + warp * 16 * P, lane);
  const float scale2 = p.scale * kLog2e;
  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[nd][e] = dv[nd][e] = 0.0f;

  int buf = 0;
  for (int64_t q0 = q_begin; q0 < p.q_len; q0 += M, buf ^= 1) {
    if (q0 + M < p.q_len) load_query_tile(q0 + M, buf ^ 1);  // its buffer was freed by the last barrier
    mma::cp_async_commit();
    mma::cp_async_wait<1>();  // this tile's group is complete
    __syncthreads();
    const T* q_t = q_s + buf * M * P;
    const T* do_t = do_s + buf * M * P;
    const float* lse_t = lse_s + buf * M;
    const float* delta_t = delta_s + buf * M;
    // Warp-uniform skips: the warp's keys are past kv_end, or in the future of a whole chunk.
    if (key_w < kv_end) {
#pragma unroll 1
      for (int c = 0; c < M; c += 16) {
        const int64_t qc = q0 + c;
        if (qc >= p.q_len) break;
        if (p.causal && key_w > qc + 15 + p.causal_offset) continue;
        float s[2][4], dp[2][4];
        scores<T, D>(s, kf, q_t + c * P, lane);   // S^T: keys x queries
        scores<T, D>(dp, vf, do_t + c * P, lane);  // dP^T
        const ChunkMask mask(p, qc, key_w, kv_end);
#pragma unroll
        for (int nb = 0; nb < 2; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int qi = nb * 8 + 2 * t + (e & 1), col = c + qi;
            // Masked pairs get exactly 0, whatever exp2f gives for lse = -inf.
            const bool vis = mask(qi, g + 8 * (e >> 1));
            float shift = -lse_t[col];  // (the plain kernel's expression when !kRelBias)
            if constexpr (kRelBias) shift += vis ? rel_bias_log2<T>(p, qc + qi, key_w + g + 8 * (e >> 1), h) : 0.0f;
            s[nb][e] = vis ? exp2f(fmaf(s[nb][e], scale2, shift)) : 0.0f;
            dp[nb][e] = s[nb][e] * fmaf(dp[nb][e], p.scale, -delta_t[col]);  // scale dS^T
          }
        uint32_t a[4];
        pack_a<T>(a, s);
        accumulate<T, D>(dv, a, do_t + c * P, lane);  // dV += P^T dO
        pack_a<T>(a, dp);
        accumulate<T, D>(dk, a, q_t + c * P, lane);  // dK += dS^T Q
      }
    }
    __syncthreads();  // every warp is done with this buffer before it is refilled
  }

  // Every key of the tile below kv_len is written; masked keys have zero sums.
  T* dk_out = static_cast<T*>(bp.dk) + b * bp.dk_batch_stride + h * p.head_dim;
  T* dv_out = static_cast<T*>(bp.dv) + b * bp.dv_batch_stride + h * p.head_dim;
  store_rows<T, D>(dk_out, bp.dk_row_stride, dk, key_w, p.kv_len, head_dim, lane);
  store_rows<T, D>(dv_out, bp.dv_row_stride, dv, key_w, p.kv_len, head_dim, lane);
}

// dQ of queries [q0, q0 + 64) of one (batch, head); grid (query tiles, heads, batch).
template <typename T, int D, bool kRelBias>
__global__ void __launch_bounds__(kThreads)
    attention_dq_mma_kernel(const AttentionBackwardParams bp, const float* stats, int64_t q_pad) {
  constexpr int N = stream_rows<D>(), P = pitch<D>();
  // rel_bias: dS of the (kRows queries x N keys) tile summed per diagonal
  // x = (key - k0) - (query - q0) + kRows - 1.
  constexpr int kDiagonals = kRows + N - 1;
  const AttentionParams& p = bp.fwd;
  extern __shared__ float4 smem[];
  __shared__ float diag[kRelBias ? kDiagonals : 1];
  T* q_s = reinterpret_cast<T*>(smem);  // (kRows, P): the block's queries
  T* do_s = q_s + kRows * P;            // (kRows, P): their dO
  T* k_s = do_s + kRows * P;            // [2](N, P): the key tile
  T* v_s = k_s + 2 * N * P;             // [2](N, P): its values

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane / 4, t = lane % 4;
  const int64_t b = blockIdx.z, h = blockIdx.y, q0 = int64_t(blockIdx.x) * kRows;
  const int head_dim = static_cast<int>(p.head_dim);
  const Head<T> head(bp, b, h);
  const int64_t kv_end = head.kv_end, bh = b * p.heads + h;

  // Keys any query of the block can see: [0, kv_stop).
  int64_t kv_stop = kv_end;
  if (p.causal) kv_stop = min64(kv_stop, max64(min64(q0 + kRows, p.q_len) - 1 + p.causal_offset + 1, 0));

  auto load_key_tile = [&](int64_t k0, int buf) {
    load_rows_async<D, N>(k_s + buf * N * P, head.k, p.k_row_stride, k0, kv_end, head_dim);
    load_rows_async<D, N>(v_s + buf * N * P, head.v, p.v_row_stride, k0, kv_end, head_dim);
  };
  load_rows_async<D, kRows>(q_s, head.q, p.q_row_stride, q0, p.q_len, head_dim);
  load_rows_async<D, kRows>(do_s, head.dout, bp.dout_row_stride, q0, p.q_len, head_dim);
  if (kv_stop > 0) load_key_tile(0, 0);
  mma::cp_async_commit();
  mma::cp_async_wait<0>();
  __syncthreads();

  const int64_t row_w = q0 + warp * 16;  // this warp's first query
  RowFragments<T, D> qf, dof;
  qf.init(q_s + warp * 16 * P, lane);
  dof.init(do_s + warp * 16 * P, lane);
  // Rows g and g + 8 of the warp: the stats are padded to q_pad >= q0 + kRows.
  float lse_r[2], delta_r[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    lse_r[half] = stats[bh * q_pad + row_w + g + 8 * half];
    delta_r[half] = stats[(p.batch * p.heads + bh) * q_pad + row_w + g + 8 * half];
  }
  const float scale2 = p.scale * kLog2e;
  float dq[D / 8][4];
#pragma unroll
  for (int nd = 0; nd < D / 8; ++nd)
#pragma unroll
    for (int e = 0; e < 4; ++e) dq[nd][e] = 0.0f;

  const bool drel = kRelBias && bp.drel_bias != nullptr;  // block-uniform
  const float inv_scale = 1.0f / p.scale;                  // dS from scale * dS (scale > 0 with rel_bias)
  if (drel) {
    for (int x = tid; x < kDiagonals; x += kThreads) diag[x] = 0.0f;  // ordered by the loop's first barrier
  }
  int buf = 0;
  for (int64_t k0 = 0; k0 < kv_stop; k0 += N, buf ^= 1) {
    if (k0 + N < kv_stop) load_key_tile(k0 + N, buf ^ 1);
    mma::cp_async_commit();
    mma::cp_async_wait<1>();
    __syncthreads();
    const T* k_t = k_s + buf * N * P;
    const T* v_t = v_s + buf * N * P;
    if (row_w < p.q_len) {
#pragma unroll 1
      for (int c = 0; c < N; c += 16) {
        const int64_t kc = k0 + c;
        if (kc >= kv_stop) break;
        if (p.causal && kc > row_w + 15 + p.causal_offset) break;  // later chunks are further in the future
        float s[2][4], dp[2][4];
        scores<T, D>(s, qf, k_t + c * P, lane);    // S: queries x keys
        scores<T, D>(dp, dof, v_t + c * P, lane);  // dP
        const ChunkMask mask(p, row_w, kc, kv_end);
#pragma unroll
        for (int nb = 0; nb < 2; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int half = e >> 1, kj = nb * 8 + 2 * t + (e & 1);
            const bool vis = mask(g + 8 * half, kj);
            float shift = -lse_r[half];
            if constexpr (kRelBias) shift += vis ? rel_bias_log2<T>(p, row_w + g + 8 * half, kc + kj, h) : 0.0f;
            s[nb][e] = vis ? exp2f(fmaf(s[nb][e], scale2, shift)) : 0.0f;
            dp[nb][e] = s[nb][e] * fmaf(dp[nb][e], p.scale, -delta_r[half]);  // scale dS
            if (drel && vis) atomicAdd(&diag[(c + kj) - (warp * 16 + g + 8 * half) + kRows - 1], dp[nb][e] * inv_scale);
          }
        uint32_t a[4];
        pack_a<T>(a, dp);
        accumulate<T, D>(dq, a, k_t + c * P, lane);  // dQ += dS K
      }
    }
    __syncthreads();
    if (drel) {  // this tile's sums: every warp is past its atomics; the zeros are ordered
      // before the next tile's by its first barrier
      for (int x = tid; x < kDiagonals; x += kThreads) {
        const int64_t idx = p.rel_bias_origin + k0 - q0 + x - (kRows - 1);
        if (diag[x] != 0.0f && idx >= 0 && idx < p.rel_bias_span) atomicAdd(&bp.drel_bias[idx * p.heads + h], diag[x]);
        diag[x] = 0.0f;
      }
    }
  }

  T* dq_out = static_cast<T*>(bp.dq) + b * bp.dq_batch_stride + h * p.head_dim;
  store_rows<T, D>(dq_out, bp.dq_row_stride, dq, row_w, p.q_len, head_dim, lane);
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename T, int D, bool kRelBias>
void launch_mma_backward(const AttentionBackwardParams& bp, const float* stats, int64_t q_pad, cudaStream_t stream) {
  const AttentionParams& p = bp.fwd;
  const std::string what = "head_dim " + std::to_string(p.head_dim);
  constexpr size_t dkdv_smem = dkdv_smem_bytes<D>(), dq_smem = dq_smem_bytes<D>();
  allow_shared_memory(reinterpret_cast<const void*>(attention_dkdv_mma_kernel<T, D, kRelBias>), dkdv_smem,
                      "attention_backward", what);
  allow_shared_memory(reinterpret_cast<const void*>(attention_dq_mma_kernel<T, D, kRelBias>), dq_smem,
                      "attention_backward", what);
  const unsigned heads = static_cast<unsigned>(p.heads), batch = static_cast<unsigned>(p.batch);
  if (p.kv_len > 0) {
    const dim3 grid(static_cast<unsigned>((p.kv_len + kRows - 1) / kRows), heads, batch);
    attention_dkdv_mma_kernel<T, D, kRelBias><<<grid, kThreads, dkdv_smem, stream>>>(bp, stats, q_pad);
    TFORMER_CUDA_CHECK_LAUNCH("attention_dkdv_mma_kernel");
  }
  if (p.q_len > 0) {
    const dim3 grid(static_cast<unsigned>((p.q_len + kRows - 1) / kRows), heads, batch);
    attention_dq_mma_kernel<T, D, kRelBias><<<grid, kThreads, dq_smem, stream>>>(bp, stats, q_pad);
    TFORMER_CUDA_CHECK_LAUNCH("attention_dq_mma_kernel");
  }
}

template <typename T, int D>
void launch_mma_backward(const AttentionBackwardParams& bp, const float* stats, int64_t q_pad, cudaStream_t stream) {
  if (bp.fwd.rel_bias != nullptr) launch_mma_backward<T, D, true>(bp, stats, q_pad, stream);
  else launch_mma_backward<T, D, false>(bp, stats, q_pad, stream);
}

template <typename T>
void launch_mma_backward(const AttentionBackwardParams& bp, CachingAllocator& allocator, cudaStream_t stream) {
  const AttentionParams& p = bp.fwd;
  const int64_t q_pad = (p.q_len + kRows - 1) / kRows * kRows, rows = p.batch * p.heads * q_pad;
  ScopedBlock stats(allocator, static_cast<size_t>(rows > 0 ? 2 * rows : 1) * sizeof(float));
  if (rows > 0) {
    attention_mma_stats_kernel<T><<<static_cast<unsigned>((rows + kStatsWarps - 1) / kStatsWarps),
                                    kStatsWarps * 32, 0, stream>>>(bp, q_pad, stats.as<float>());
    TFORMER_CUDA_CHECK_LAUNCH("attention_mma_stats_kernel");
  }
  if (p.head_dim <= 32) launch_mma_backward<T, 32>(bp, stats.as<float>(), q_pad, stream);
  else if (p.head_dim <= 64) launch_mma_backward<T, 64>(bp, stats.as<float>(), q_pad, stream);
  else if (p.head_dim <= 96) launch_mma_backward<T, 96>(bp, stats.as<float>(), q_pad, stream);
  else launch_mma_backward<T, 128>(bp, stats.as<float>(), q_pad, stream);
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool attention_backward_mma_supported(const AttentionBackwardParams& bp) {
  const AttentionParams& p = bp.fwd;
  if (p.dtype != DType::f16 && p.dtype != DType::bf16) return false;
  if (p.head_dim % 8 != 0 || p.head_dim > 128 || p.kv_group != 1) return false;
  if (p.rel_bias != nullptr && !(p.scale > 0.0f && p.scale < INFINITY)) return false;  // drel_bias divides by it
  const int64_t q_pad = (p.q_len + kRows - 1) / kRows * kRows;
  if (p.batch * p.heads * q_pad > int64_t(0x7fffffff) * kStatsWarps) return false;  // the stats grid
  for (const void* ptr : {p.q, p.k, p.v, bp.dout, static_cast<const void*>(bp.dq), static_cast<const void*>(bp.dk),
                          static_cast<const void*>(bp.dv)})
    if (!aligned16(ptr)) return false;
  for (int64_t stride : {p.q_batch_stride, p.q_row_stride, p.k_batch_stride, p.k_row_stride, p.v_batch_stride,
                         p.v_row_stride, bp.dout_batch_stride, bp.dout_row_stride, bp.dq_batch_stride,
                         bp.dq_row_stride, bp.dk_batch_stride, bp.dk_row_stride, bp.dv_batch_stride, bp.dv_row_stride})
    if (stride % 8 != 0) return false;  // 8 16-bit elements: 16 bytes
  return true;
}

void attention_backward_mma(const AttentionBackwardParams& bp, CachingAllocator& allocator, cudaStream_t stream) {
  if (bp.fwd.dtype == DType::f16) launch_mma_backward<__half>(bp, allocator, stream);
  else launch_mma_backward<__nv_bfloat16>(bp, allocator, stream);
}

}  // namespace tformer::cuda
