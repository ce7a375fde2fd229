// Backward of fused attention on CUDA cores, fp32 math, FlashAttention-2's recomputation
// (Dao 2023): the probabilities are rebuilt tile by tile from the forward's log-sum-exp,
//   P = exp(scale * q . k - lse) (masked keys 0),  delta_i = rowsum(dO_i * O_i),
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - delta),  dQ = scale dS K,  dK = scale dS^T Q,
// and no (q_len, kv_len) buffer exists. Three kernels, no atomics (deterministic):
//   attention_delta_kernel: delta, one warp per query row, into a temporary;
//   attention_dkdv_kernel: one block per 32 keys of a (batch, head); it walks the query
//     tiles that can see them and keeps dK and dV in registers;
//   attention_dq_kernel: one block per 32 queries; it walks the key tiles they can see
//     and keeps dQ in registers.
// dQ's kernel recomputes S and dP rather than adding into dQ with atomics from the dK/dV
// kernel (FA2's choice): 7 tile products instead of 5, but fixed summation order and no
// fp32 dQ buffer.
//
// Both main kernels: 8 warps; a warp owns 4 rows of its side of the block (keys in the
// dK/dV kernel, queries in the dQ kernel) and a lane one row of the streamed 32-row tile,
// so each lane computes 4 scores (and 4 dP) with broadcast float4 reads of the warp's
// rows and conflict-free reads of the transposed tile (pitch 33). The sums over the
// streamed tile (dV += P^T dO, dK += dS^T Q, dQ += dS K) take each lane's P / dS by
// shuffle and read the tile's transpose at [d][lane-indexed row]: lane owns dims lane + 32 t.
// __launch_bounds__(256, 2): at most 128 registers, two blocks per SM where shared memory
// allows (without the minimum, ptxas caps these at 80 registers and spills).
// rel_bias (T5): a template flag of both main kernels; the bias joins the recomputed
// scores, and with bp.drel_bias the dQ kernel also sums dS along the diagonals of its
// (32 queries x 32 keys) tile in shared memory, then adds the block's sums to drel_bias
// with one float atomicAdd per diagonal (the only atomics here: drel_bias's order of
// additions varies in the last bits from run to run).
// Head dims up to 128 (padded to 32, 64, 96, 128: a template parameter, so the register
// accumulators have compile-time indices). f16 / bf16 with aligned rows: train_attention_mma.cu (tensor cores).
#include <cmath>
#include <stdexcept>
#include <string>

#include "attention_keys.cuh"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "launch_util.h"
#include "ops.h"
#include "reduce.cuh"

namespace tformer::cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 4;
constexpr int kTile = kWarps * kRowsPerWarp;  // 32: rows of the block's side, and of a streamed tile
static_assert(kTile == 32, "a streamed tile has one row per lane");
constexpr int kPitch = kTile + 1;  // transposed tiles: +1 float against bank conflicts
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxHeadDim = 128;

// Shared memory of both main kernels: two (kTile, D) row tiles, two (D, kPitch) transposed.
template <int D>
constexpr size_t backward_smem_bytes() {
  return (2 * size_t(kTile) * D + 2 * size_t(D) * kPitch) * sizeof(float);
}


// dS sums of a (kTile queries from q0) x (kTile keys from k0) tile per diagonal x =
// (j - k0) - (i - q0) + kTile - 1, i.e. rel_bias entry origin + k0 - q0 + x - (kTile - 1).
constexpr int kDiagonals = 2 * kTile - 1;

// Adds the diagonal sums of one tile into drel_bias (head h) and zeroes them; the caller
// has passed a barrier since the last atomicAdd to `diag`, and passes one before the next.
// Entries outside the span hold only masked pairs (0): skipped.
__device__ __forceinline__ void flush_diagonals(const AttentionBackwardParams& bp, float* diag, int64_t q0,
                                                int64_t k0, int64_t h) {
  const AttentionParams& p = bp.fwd;
  for (int x = threadIdx.x; x < kDiagonals; x += blockDim.x) {
    const int64_t idx = p.rel_bias_origin + k0 - q0 + x - (kTile - 1);
    if (diag[x] != 0.0f && idx >= 0 && idx < p.rel_bias_span) atomicAdd(&bp.drel_bias[idx * p.heads + h], diag[x]);
    diag[x] = 0.0f;
  }
}

__device__ __forceinline__ bool visible(const AttentionParams& p, int64_t i, int64_t j, int64_t kv_end) {
  return j < kv_end && (!p.causal || j <= i + p.causal_offset);
}

// What both main kernels read of one (batch, head): its column block of q/k/v/dO, its
// rows of lse and delta, and how many keys its length mask leaves.
template <typename T>
struct HeadView {
  const T *q, *k, *v, *dout;
  const float *lse, *delta;
  int64_t kv_end;

  __device__ __forceinline__ HeadView(const AttentionBackwardParams& bp, const float* delta_all, int64_t b,
                                      int64_t h) {
    const AttentionParams& p = bp.fwd;
    q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.head_dim;
    k = static_cast<const T*>(p.k) + b * p.k_batch_stride + h * p.head_dim;
    v = static_cast<const T*>(p.v) + b * p.v_batch_stride + h * p.head_dim;
    dout = static_cast<const T*>(bp.dout) + b * bp.dout_batch_stride + h * p.head_dim;
    lse = bp.lse + (b * p.heads + h) * p.q_len;
    delta = delta_all + (b * p.heads + h) * p.q_len;
    kv_end = keys_of_batch(p, b);
  }
};

// Rows [r0, r0 + kTile) of two same-shaped head slices a and b (row strides sa, sb) into
// shared memory as float, zeros past row_end and past head_dim: row-major (kTile, D), or
// transposed (D, kPitch) for the streamed tiles read at [d][lane-indexed row].
template <int D, bool Transposed, typename T>
__device__ __forceinline__ void load_tile_pair(float* a_s, float* b_s, const T* a, int64_t sa, const T* b, int64_t sb,
                                               int64_t r0, int64_t row_end, int head_dim) {
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {
    const int r = idx / D, d = idx % D;
    const int64_t row = r0 + r;
    const bool valid = row < row_end && d < head_dim;
    const int at = Transposed ? d * kPitch + r : idx;
    a_s[at] = valid ? to_float(a[row * sa + d]) : 0.0f;
    b_s[at] = valid ? to_float(b[row * sb + d]) : 0.0f;
  }
}

}  // namespace

// ---------------------------------------------------------------- kernels

// delta[(b * heads + h) * q_len + i] = sum_d dO[b, i, h, d] * O[b, i, h, d]; one warp per row.
template <typename T>
__global__ void __launch_bounds__(kThreads) attention_delta_kernel(const AttentionBackwardParams bp, float* delta) {
  const AttentionParams& p = bp.fwd;
  const int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= p.batch * p.heads * p.q_len) return;  // warp-uniform
  const int64_t i = row % p.q_len, bh = row / p.q_len, h = bh % p.heads, b = bh / p.heads;
  const T* o = static_cast<const T*>(p.out) + b * p.out_batch_stride + i * p.out_row_stride + h * p.head_dim;
  const T* dout = static_cast<const T*>(bp.dout) + b * bp.dout_batch_stride + i * bp.dout_row_stride + h * p.head_dim;
  float dot = 0.0f;
  for (int64_t d = lane; d < p.head_dim; d += 32) dot = fmaf(to_float(dout[d]), to_float(o[d]), dot);
  dot = warp_sum(dot);
  if (lane == 0) delta[row] = dot;
}

// dK and dV of keys [k0, k0 + 32) of one (batch, head); grid (key tiles, heads, batch).
template <typename T, int D, bool kRelBias>
__global__ void __launch_bounds__(kThreads, 2) attention_dkdv_kernel(const AttentionBackwardParams bp, const float* delta) {
  static_assert(D % 32 == 0, "D is a multiple of the warp size");
  constexpr int kDimsPerLane = D / 32;
  const AttentionParams& p = bp.fwd;
  extern __shared__ float4 smem[];
  float* k_s = reinterpret_cast<float*>(smem);  // (kTile, D): the block's keys
  float* v_s = k_s + kTile * D;                 // (kTile, D): their values
  float* q_t = v_s + kTile * D;                 // (D, kPitch): the query tile, transposed
  float* do_t = q_t + D * kPitch;               // (D, kPitch): its dO, transposed

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.z, h = blockIdx.y, k0 = int64_t(blockIdx.x) * kTile;
  const int head_dim = static_cast<int>(p.head_dim);
  const HeadView<T> view(bp, delta, b, h);
  const T *q = view.q, *k = view.k, *v = view.v, *dout = view.dout;
  const float *lse = view.lse, *delta_bh = view.delta;
  const int64_t kv_end = view.kv_end;

  // The block's keys and values, zeros past the visible keys and past head_dim.
  load_tile_pair<D, false>(k_s, v_s, k, p.k_row_stride, v, p.v_row_stride, k0, kv_end, head_dim);

  // Query tiles that can see a key of the block: from the first that sees key k0 (causal).
  int64_t q_begin = 0;
  if (p.causal) q_begin = max64(0, k0 - p.causal_offset) / kTile * kTile;
  if (k0 >= kv_end) q_begin = p.q_len;  // no visible key here: zero gradients
  const int64_t key0 = k0 + warp * kRowsPerWarp;  // this warp's first key
  const float* k_warp = k_s + warp * kRowsPerWarp * D;
  const float* v_warp = v_s + warp * kRowsPerWarp * D;
  const float lse_scale = p.scale * kLog2e;

  float dk[kRowsPerWarp][kDimsPerLane], dv[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) dk[r][t] = dv[r][t] = 0.0f;

  for (int64_t q0 = q_begin; q0 < p.q_len; q0 += kTile) {
    __syncthreads();  // K / V staged; every warp is done with the previous query tile
    load_tile_pair<D, true>(q_t, do_t, q, p.q_row_stride, dout, bp.dout_row_stride, q0, p.q_len, head_dim);
    __syncthreads();

    // Warp-uniform skips: the warp's keys are all past kv_end, or all in the future of
    // every query of the tile.
    if (key0 >= kv_end) continue;
    if (p.causal && key0 > q0 + (kTile - 1) + p.causal_offset) continue;

    // Lane: query i = q0 + lane against the warp's 4 keys.
    const int64_t i = q0 + lane;
    const bool row_valid = i < p.q_len;
    const float lse_i = row_valid ? lse[i] * kLog2e : 0.0f;  // -inf for a row that sees no key
    const float delta_i = row_valid ? delta_bh[i] : 0.0f;
    float s[kRowsPerWarp], dp[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = dp[r] = 0.0f;
#pragma unroll 2
    for (int d = 0; d < D; d += 4) {
      float qd[4], dod[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) qd[c] = q_t[(d + c) * kPitch + lane], dod[c] = do_t[(d + c) * kPitch + lane];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float4 kv = *reinterpret_cast<const float4*>(k_warp + r * D + d);
        const float4 vv = *reinterpret_cast<const float4*>(v_warp + r * D + d);
        s[r] = fmaf(qd[0], kv.x, fmaf(qd[1], kv.y, fmaf(qd[2], kv.z, fmaf(qd[3], kv.w, s[r]))));
        dp[r] = fmaf(dod[0], vv.x, fmaf(dod[1], vv.y, fmaf(dod[2], vv.z, fmaf(dod[3], vv.w, dp[r]))));
      }
    }
    float prob[kRowsPerWarp], ds[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      // Masked (or padded) pairs get exactly 0, whatever exp2f gives for lse = -inf.
      const bool vis = row_valid && visible(p, i, key0 + r, kv_end);
      float shift = -lse_i;  // (the plain kernel's expression when !kRelBias)
      if constexpr (kRelBias) shift += vis ? rel_bias_log2<T>(p, i, key0 + r, h) : 0.0f;
      prob[r] = vis ? exp2f(fmaf(s[r], lse_scale, shift)) : 0.0f;
      ds[r] = prob[r] * (dp[r] - delta_i);
    }

    // dV[key] += sum_i P[i, key] dO[i, :],  dK[key] += sum_i dS[i, key] Q[i, :] (scale at the end).
#pragma unroll 4
    for (int ii = 0; ii < kTile; ++ii) {
      float dov[kDimsPerLane], qv[kDimsPerLane];
#pragma unroll
      for (int t = 0; t < kDimsPerLane; ++t) {
        dov[t] = do_t[(lane + 32 * t) * kPitch + ii];
        qv[t] = q_t[(lane + 32 * t) * kPitch + ii];
      }
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float pi = __shfl_sync(kFullMask, prob[r], ii);
        const float dsi = __shfl_sync(kFullMask, ds[r], ii);
#pragma unroll
        for (int t = 0; t < kDimsPerLane; ++t) {
          dv[r][t] = fmaf(pi, dov[t], dv[r][t]);
          dk[r][t] = fmaf(dsi, qv[t], dk[r][t]);
        }
      }
    }
  }

  // Every key of the tile below kv_len is written; masked keys have zero sums.
  T* dk_out = static_cast<T*>(bp.dk) + b * bp.dk_batch_stride + h * p.head_dim;
  T* dv_out = static_cast<T*>(bp.dv) + b * bp.dv_batch_stride + h * p.head_dim;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t j = key0 + r;
    if (j >= p.kv_len) continue;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d >= head_dim) continue;
      dk_out[j * bp.dk_row_stride + d] = from_float<T>(dk[r][t] * p.scale);
      dv_out[j * bp.dv_row_stride + d] = from_float<T>(dv[r][t]);
    }
  }
}

// dQ of queries [q0, q0 + 32) of one (batch, head); grid (query tiles, heads, batch).
template <typename T, int D, bool kRelBias>
__global__ void __launch_bounds__(kThreads, 2) attention_dq_kernel(const AttentionBackwardParams bp, const float* delta) {
  static_assert(D % 32 == 0, "D is a multiple of the warp size");
  constexpr int kDimsPerLane = D / 32;
  const AttentionParams& p = bp.fwd;
  extern __shared__ float4 smem[];
  __shared__ float diag[kRelBias ? kDiagonals : 1];  // rel_bias: this tile's dS summed per key - query
  float* q_s = reinterpret_cast<float*>(smem);  // (kTile, D): the block's queries
  float* do_s = q_s + kTile * D;                // (kTile, D): their dO
  float* k_t = do_s + kTile * D;                // (D, kPitch): the key tile, transposed
  float* v_t = k_t + D * kPitch;                // (D, kPitch): its values, transposed

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.z, h = blockIdx.y, q0 = int64_t(blockIdx.x) * kTile;
  const int head_dim = static_cast<int>(p.head_dim);
  const HeadView<T> view(bp, delta, b, h);
  const T *q = view.q, *k = view.k, *v = view.v, *dout = view.dout;
  const float *lse = view.lse, *delta_bh = view.delta;
  const int64_t kv_end = view.kv_end;

  load_tile_pair<D, false>(q_s, do_s, q, p.q_row_stride, dout, bp.dout_row_stride, q0, p.q_len, head_dim);

  // Keys any query of the block can see: [0, kv_stop).
  int64_t kv_stop = kv_end;
  if (p.causal) kv_stop = min64(kv_stop, max64(min64(q0 + kTile, p.q_len) - 1 + p.causal_offset + 1, 0));
  const int64_t row0 = q0 + warp * kRowsPerWarp;  // this warp's first query
  const float* q_warp = q_s + warp * kRowsPerWarp * D;
  const float* do_warp = do_s + warp * kRowsPerWarp * D;
  const float lse_scale = p.scale * kLog2e;
  float lse_r[kRowsPerWarp], delta_r[kRowsPerWarp];
  float dq[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t i = row0 + r;
    lse_r[r] = i < p.q_len ? lse[i] * kLog2e : 0.0f;
    delta_r[r] = i < p.q_len ? delta_bh[i] : 0.0f;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) dq[r][t] = 0.0f;
  }

  const bool drel = kRelBias && bp.drel_bias != nullptr;  // block-uniform
  if (drel) {
    for (int x = tid; x < kDiagonals; x += kThreads) diag[x] = 0.0f;
  }
  for (int64_t k0 = 0; k0 < kv_stop; k0 += kTile) {
    __syncthreads();  // Q / dO staged; every warp is done with the previous key tile
    if (drel && k0 > 0) flush_diagonals(bp, diag, q0, k0 - kTile, h);  // the previous tile's sums
    load_tile_pair<D, true>(k_t, v_t, k, p.k_row_stride, v, p.v_row_stride, k0, kv_end, head_dim);
    __syncthreads();

    if (row0 >= p.q_len) continue;  // warp-uniform skips, as in the dK/dV kernel
    if (p.causal && k0 > row0 + (kRowsPerWarp - 1) + p.causal_offset) continue;

    // Lane: key j = k0 + lane against the warp's 4 queries.
    const int64_t j = k0 + lane;
    float s[kRowsPerWarp], dp[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = dp[r] = 0.0f;
#pragma unroll 2
    for (int d = 0; d < D; d += 4) {
      float kd[4], vd[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) kd[c] = k_t[(d + c) * kPitch + lane], vd[c] = v_t[(d + c) * kPitch + lane];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float4 qv = *reinterpret_cast<const float4*>(q_warp + r * D + d);
        const float4 dov = *reinterpret_cast<const float4*>(do_warp + r * D + d);
        s[r] = fmaf(qv.x, kd[0], fmaf(qv.y, kd[1], fmaf(qv.z, kd[2], fmaf(qv.w, kd[3], s[r]))));
        dp[r] = fmaf(dov.x, vd[0], fmaf(dov.y, vd[1], fmaf(dov.z, vd[2], fmaf(dov.w, vd[3], dp[r]))));
      }
    }
    float ds[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t i = row0 + r;
      const bool vis = i < p.q_len && visible(p, i, j, kv_end);
      float shift = -lse_r[r];
      if constexpr (kRelBias) shift += vis ? rel_bias_log2<T>(p, i, j, h) : 0.0f;
      const float prob = vis ? exp2f(fmaf(s[r], lse_scale, shift)) : 0.0f;
      ds[r] = prob * (dp[r] - delta_r[r]);
      // Diagonal (j - k0) - (i - q0) + kTile - 1: the lanes of a row hit distinct ones.
      if (drel && vis) atomicAdd(&diag[lane - (warp * kRowsPerWarp + r) + kTile - 1], ds[r]);
    }

    // dQ[i] += sum_j dS[i, j] K[j, :] (scale at the end).
#pragma unroll 4
    for (int jj = 0; jj < kTile; ++jj) {
      float kv[kDimsPerLane];
#pragma unroll
      for (int t = 0; t < kDimsPerLane; ++t) kv[t] = k_t[(lane + 32 * t) * kPitch + jj];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float dsj = __shfl_sync(kFullMask, ds[r], jj);
#pragma unroll
        for (int t = 0; t < kDimsPerLane; ++t) dq[r][t] = fmaf(dsj, kv[t], dq[r][t]);
      }
    }
  }

  if (drel && kv_stop > 0) {  // the last tile's sums
    __syncthreads();
    flush_diagonals(bp, diag, q0, (kv_stop - 1) / kTile * kTile, h);
  }

  T* dq_out = static_cast<T*>(bp.dq) + b * bp.dq_batch_stride + h * p.head_dim;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t i = row0 + r;
    if (i >= p.q_len) continue;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < head_dim) dq_out[i * bp.dq_row_stride + d] = from_float<T>(dq[r][t] * p.scale);
    }
  }
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename T, int D, bool kRelBias>
void launch_backward(const AttentionBackwardParams& bp, const float* delta, cudaStream_t stream) {
  const AttentionParams& p = bp.fwd;
  constexpr size_t smem = backward_smem_bytes<D>();
  const std::string what = "head_dim " + std::to_string(p.head_dim);
  allow_shared_memory(reinterpret_cast<const void*>(attention_dkdv_kernel<T, D, kRelBias>), smem,
                      "attention_backward", what);
  allow_shared_memory(reinterpret_cast<const void*>(attention_dq_kernel<T, D, kRelBias>), smem,
                      "attention_backward", what);
  const unsigned heads = static_cast<unsigned>(p.heads), batch = static_cast<unsigned>(p.batch);
  if (p.kv_len > 0) {
    const dim3 grid(static_cast<unsigned>((p.kv_len + kTile - 1) / kTile), heads, batch);
    attention_dkdv_kernel<T, D, kRelBias><<<grid, kThreads, smem, stream>>>(bp, delta);
    TFORMER_CUDA_CHECK_LAUNCH("attention_dkdv_kernel");
  }
  if (p.q_len > 0) {
    const dim3 grid(static_cast<unsigned>((p.q_len + kTile - 1) / kTile), heads, batch);
    attention_dq_kernel<T, D, kRelBias><<<grid, kThreads, smem, stream>>>(bp, delta);
    TFORMER_CUDA_CHECK_LAUNCH("attention_dq_kernel");
  }
}

template <typename T, int D>
void launch_backward(const AttentionBackwardParams& bp, const float* delta, cudaStream_t stream) {
  if (bp.fwd.rel_bias != nullptr) launch_backward<T, D, true>(bp, delta, stream);
  else launch_backward<T, D, false>(bp, delta, stream);
}

template <typename T>
void launch_backward(const AttentionBackwardParams& bp, CachingAllocator& allocator, cudaStream_t stream) {
  const AttentionParams& p = bp.fwd;
  const int64_t rows = p.batch * p.heads * p.q_len;
  ScopedBlock delta(allocator, static_cast<size_t>(rows > 0 ? rows : 1) * sizeof(float));
  if (rows > 0) {
    attention_delta_kernel<T><<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), kThreads, 0, stream>>>(
        bp, delta.as<float>());
    TFORMER_CUDA_CHECK_LAUNCH("attention_delta_kernel");
  }
  if (p.head_dim <= 32) launch_backward<T, 32>(bp, delta.as<float>(), stream);
  else if (p.head_dim <= 64) launch_backward<T, 64>(bp, delta.as<float>(), stream);
  else if (p.head_dim <= 96) launch_backward<T, 96>(bp, delta.as<float>(), stream);
  else launch_backward<T, 128>(bp, delta.as<float>(), stream);
}

}  // namespace

void attention_backward(const AttentionBackwardParams& bp, CachingAllocator& allocator, cudaStream_t stream) {
  const AttentionParams& p = bp.fwd;
  if (!dtype_is_float(p.dtype)) throw_unsupported_dtype("attention_backward", p.dtype);
  if (p.kv_group != 1)
    throw std::invalid_argument("cuda attention_backward: kv_group must be 1, got " + std::to_string(p.kv_group));
  if (p.head_dim > kMaxHeadDim)
    throw std::invalid_argument("cuda attention_backward: head_dim " + std::to_string(p.head_dim) +
                                " is not supported (at most " + std::to_string(kMaxHeadDim) + ")");
  if (p.batch <= 0 || p.heads <= 0 || p.head_dim <= 0 || (p.q_len <= 0 && p.kv_len <= 0)) return;
  if (p.batch > 65535 || p.heads > 65535 || p.q_len > 0x7fffffff || p.kv_len > 0x7fffffff ||
      p.batch * p.heads * p.q_len > int64_t(0x7fffffff) * kWarps) {
    throw std::invalid_argument("cuda attention_backward: batch " + std::to_string(p.batch) + " and heads " +
                                std::to_string(p.heads) + " must be at most 65535 each, q_len " +
                                std::to_string(p.q_len) + " and kv_len " + std::to_string(p.kv_len) +
                                " at most 2^31 - 1");
  }
  // f16 / bf16 with aligned rows and head_dim % 8 == 0: the tensor-core kernels.
  if (attention_backward_mma_supported(bp)) return attention_backward_mma(bp, allocator, stream);
  switch (p.dtype) {
    case DType::f32: return launch_backward<float>(bp, allocator, stream);
    case DType::f16: return launch_backward<__half>(bp, allocator, stream);
    case DType::bf16: return launch_backward<__nv_bfloat16>(bp, allocator, stream);
    default: throw_unsupported_dtype("attention_backward", p.dtype);
  }
}

TFORMER_CUDA_OP(attention_backward);

}  // namespace tformer::cuda
