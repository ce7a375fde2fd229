// Fused attention forward on tensor cores (mma.sync m16n8k16, f16 / bf16 inputs, fp32
// accumulation), FlashAttention-2's schedule (Dao 2023), same contract as attention.cu's
// CUDA-core kernel (AttentionParams: masks, kv_group, lse_out, zeros for a row with no key).
//
// Why this shape:
// - A block owns 64 query rows of one (batch, head), 16 per warp: a warp's rows are one
//   m16 tile, so its softmax statistics never leave the warp (FA2 splits queries, not
//   keys, across warps: no shared-memory reduction of partial outputs).
// - Q is read once into registers as A fragments (ldmatrix); K and V stream through
//   shared memory in tiles of 64 keys, double-buffered with cp.async so the next tile's
//   loads overlap this tile's math. K is row-major (key, dim) in shared memory, which
//   ldmatrix (no .trans) turns straight into B fragments of Q K^T; V is row-major too and
//   ldmatrix .trans gives B fragments of P V: neither needs a transposing copy.
// - Row pitch D + 8 halves: 8 consecutive rows of a ldmatrix start 16 bytes apart modulo
//   128, so each 8x8 load touches all 32 banks once (no conflicts, no swizzle needed).
// - The online softmax works on the accumulator fragments in place: a thread holds 2 of a
//   row's 8 columns per n-block, so row max and sum need only the quad's 4 lanes
//   (__shfl_xor 1, 2); scale * log2(e) is folded into the exponent (one FFMA + exp2 a score).
//   The running sum stays per thread and is reduced across the quad once at the end.
// - P goes from the S accumulators to A fragments by pack2 with no shared memory (the
//   m16n8 C layout of two adjacent n-blocks is the m16k16 A layout).
// - Masking arithmetic runs only on tiles that need it (the ragged end or the causal
//   diagonal); tiles wholly in a warp's causal future are skipped, and a block's key
//   range stops at its last row's causal limit.
// - The output is staged through the Q tile's shared memory (each warp its own rows) so
//   global stores are 16-byte vectors; head_dim below D reads zeros (zero-filled
//   cp.async chunks) and writes only its own columns.
// - rel_bias (T5): a template flag. With it the scores go to log2 units (scale * log2(e)
//   and the bias) before the row max, since the bias may reorder them; without it the
//   kernel is the one above.
// Registers: Q fragments D/4, O accumulators D/2, S 32 per thread; D = 128 stays under
// the 255 of one 128-thread block without spilling (ptxas report: see the launcher).
#include <cmath>
#include <cstdint>
#include <string>

#include "attention_keys.cuh"
#include "attention_mma.h"
#include "cuda_check.h"
#include "launch_util.h"
#include "mma.cuh"

namespace tformer::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockM = kWarps * 16;  // query rows per block
constexpr int kBlockN = 64;           // keys per tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.69314718055994531f;

template <int D>
constexpr int kPitch = D + 8;  // halves per shared-memory row

// Q tile, then K and V tiles of two stages.
template <int D>
constexpr size_t mma_smem_bytes() {
  return size_t(kBlockM + 4 * kBlockN) * kPitch<D> * 2;
}


// rows x D tile of rows [row0, row0 + rows) into shared memory; rows at or past `end`
// and columns at or past head_dim become zeros (their source address is `base`, mapped).
template <typename T, int D, int Rows>
__device__ __forceinline__ void load_tile(T* dst, const T* base, int64_t row_stride, int64_t row0, int64_t end,
                                          int head_dim, int tid) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert(Rows * kChunks % kThreads == 0, "whole rounds of chunks");
#pragma unroll
  for (int n = 0; n < Rows * kChunks / kThreads; ++n) {
    const int idx = tid + n * kThreads, r = idx / kChunks, c = (idx % kChunks) * 8;
    const int64_t row = row0 + r;
    const bool valid = row < end && c < head_dim;
    mma::cp_async_16(dst + r * kPitch<D> + c, valid ? base + row * row_stride + c : base, valid);
  }
}

}  // namespace

template <typename T, int D, bool kRelBias>
__global__ void __launch_bounds__(kThreads) attention_mma_kernel(const AttentionParams p) {
  static_assert(D % 16 == 0 && D <= 128, "D: 32, 64, 96 or 128");
  constexpr int P = kPitch<D>;
  constexpr int kKSteps = D / 16;       // k-steps of Q K^T
  constexpr int kNBlocks = kBlockN / 8;  // n-blocks of S
  constexpr int kDBlocks = D / 8;       // n-blocks of O
  extern __shared__ float4 smem[];
  T* q_s = reinterpret_cast<T*>(smem);
  T* k_s = q_s + kBlockM * P;  // [stage][kBlockN][P]
  T* v_s = k_s + 2 * kBlockN * P;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int64_t b = blockIdx.z, h = blockIdx.y, kv_b = b / p.kv_group;
  // Causal: the last query blocks (the most keys) first, so the short ones fill the tail.
  const int64_t q0 = int64_t(p.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x) * kBlockM;
  const int head_dim = static_cast<int>(p.head_dim);
  const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.head_dim;
  const T* k = static_cast<const T*>(p.k) + kv_b * p.k_batch_stride + h * p.head_dim;
  const T* v = static_cast<const T*>(p.v) + kv_b * p.v_batch_stride + h * p.head_dim;
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + h * p.head_dim;

  // Keys that exist for this batch: [0, kv_end); keys any row of the block can see: [0, kv_stop).
  const int64_t kv_end = keys_of_batch(p, kv_b);
  int64_t kv_stop = kv_end;
  if (p.causal) kv_stop = min64(kv_stop, max64(min64(q0 + kBlockM, p.q_len) + p.causal_offset, 0));
  const int n_tiles = static_cast<int>((kv_stop + kBlockN - 1) / kBlockN);

  const int64_t warp_row0 = q0 + warp * 16;  // this warp's first query row
  const int64_t warp_last = min64(warp_row0 + 15, p.q_len - 1);
  const bool warp_active = warp_row0 < p.q_len;
  const float sl2 = p.scale * kLog2e;

  float o[kDBlocks][4];
#pragma unroll
  for (int nd = 0; nd < kDBlocks; ++nd) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY};  // rows g and g + 8, log2 units
  float row_sum[2] = {0.0f, 0.0f};            // this thread's share
  uint32_t qf[kKSteps][4];

  if (n_tiles > 0) {
    load_tile<T, D, kBlockM>(q_s, q, p.q_row_stride, q0, p.q_len, head_dim, tid);
    load_tile<T, D, kBlockN>(k_s, k, p.k_row_stride, 0, kv_stop, head_dim, tid);
    load_tile<T, D, kBlockN>(v_s, v, p.v_row_stride, 0, kv_stop, head_dim, tid);
    mma::cp_async_commit();
  }

  for (int it = 0; it < n_tiles; ++it) {
    const int64_t j0 = int64_t(it) * kBlockN;
    const int stage = it & 1;
    if (it + 1 < n_tiles) {  // the next tile into the other stage (read last in it - 1)
      const int64_t j1 = j0 + kBlockN;
      load_tile<T, D, kBlockN>(k_s + (stage ^ 1) * kBlockN * P, k, p.k_row_stride, j1, kv_stop, head_dim, tid);
      load_tile<T, D, kBlockN>(v_s + (stage ^ 1) * kBlockN * P, v, p.v_row_stride, j1, kv_stop, head_dim, tid);
      mma::cp_async_commit();
      mma::cp_async_wait<1>();
    } else {
      mma::cp_async_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks)
        mma::ldmatrix_x4(qf[ks], q_s + (warp * 16 + lane % 16) * P + ks * 16 + (lane / 16) * 8);
    }
    // Warp-uniform: rows past q_len, or a tile wholly in the causal future of every row.
    if (warp_active && !(p.causal && j0 > warp_last + p.causal_offset)) {
      const T* kt = k_s + stage * kBlockN * P;
      const T* vt = v_s + stage * kBlockN * P;
      float s[kNBlocks][4];
#pragma unroll
      for (int nb = 0; nb < kNBlocks; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll
      for (int np = 0; np < kNBlocks / 2; ++np)
#pragma unroll
        for (int ks = 0; ks < kKSteps; ++ks) {
          uint32_t kb[4];  // B fragments of keys np*16 + 0..7 and + 8..15
          mma::ldmatrix_x4(kb, kt + (np * 16 + (lane / 16) * 8 + lane % 8) * P + ks * 16 + ((lane / 8) % 2) * 8);
          const uint32_t b0[2] = {kb[0], kb[1]}, b1[2] = {kb[2], kb[3]};
          mma::mma_16816<T>(s[2 * np], qf[ks], b0);
          mma::mma_16816<T>(s[2 * np + 1], qf[ks], b1);
        }
      // Masks only where the tile crosses the keys' end or the warp's causal diagonal.
      if (j0 + kBlockN > kv_end || (p.causal && j0 + kBlockN - 1 > warp_row0 + p.causal_offset)) {
#pragma unroll
        for (int nb = 0; nb < kNBlocks; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int64_t key = j0 + nb * 8 + 2 * t + (e & 1), row = warp_row0 + g + 8 * (e >> 1);
            if (key >= kv_end || (p.causal && key > row + p.causal_offset)) s[nb][e] = -INFINITY;
          }
      }
      // rel_bias: to log2 units here (score * scale * log2(e) + bias * log2(e)); the softmax
      // below then multiplies by 1. Rows past q_len (zero queries) read no bias.
      if constexpr (kRelBias) {
#pragma unroll
        for (int nb = 0; nb < kNBlocks; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int64_t key = j0 + nb * 8 + 2 * t + (e & 1), row = warp_row0 + g + 8 * (e >> 1);
            const bool visible = key < kv_end && !(p.causal && key > row + p.causal_offset) && row < p.q_len;
            s[nb][e] = visible ? fmaf(s[nb][e], sl2, rel_bias_log2<T>(p, row, key, h)) : -INFINITY;
          }
      }
      constexpr bool kLog2Units = kRelBias;
      const float mul = kLog2Units ? 1.0f : sl2;
      // Online softmax of rows g (r = 0) and g + 8 (r = 1): the max of the raw scores
      // (scale > 0), then p = exp2(s * scale * log2(e) - max): one FFMA and one MUFU a score.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < kNBlocks; ++nb) mx = fmaxf(mx, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float new_max = fmaxf(row_max[r], mx * mul);
        // A row with no visible key yet keeps max -inf: subtract 0 so that exp2 gives 0, not NaN.
        const float base = new_max == -INFINITY ? 0.0f : new_max;
        const float correction = exp2f(row_max[r] - base);
        row_max[r] = new_max;
        float sum = 0.0f;
#pragma unroll
        for (int nb = 0; nb < kNBlocks; ++nb) {
          s[nb][2 * r] = exp2f(fmaf(s[nb][2 * r], mul, -base));
          s[nb][2 * r + 1] = exp2f(fmaf(s[nb][2 * r + 1], mul, -base));
          sum += s[nb][2 * r] + s[nb][2 * r + 1];
        }
        row_sum[r] = row_sum[r] * correction + sum;
#pragma unroll
        for (int nd = 0; nd < kDBlocks; ++nd) o[nd][2 * r] *= correction, o[nd][2 * r + 1] *= correction;
      }
      // O += P V, 16 keys per k-step.
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        const uint32_t a[4] = {mma::pack2<T>(s[2 * kk][0], s[2 * kk][1]), mma::pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                               mma::pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                               mma::pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t vb[4];  // B fragments of dims dp*16 + 0..7 and + 8..15
          mma::ldmatrix_x4_trans(vb, vt + (kk * 16 + lane % 16) * P + dp * 16 + (lane / 16) * 8);
          const uint32_t b0[2] = {vb[0], vb[1]}, b1[2] = {vb[2], vb[3]};
          mma::mma_16816<T>(o[2 * dp], a, b0);
          mma::mma_16816<T>(o[2 * dp + 1], a, b1);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

  // Normalise, write lse, stage the warp's rows in its part of the Q tile, store 16 bytes at a time.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float total = row_sum[r];
    total += __shfl_xor_sync(0xffffffffu, total, 1);
    total += __shfl_xor_sync(0xffffffffu, total, 2);
    // A row that sees no key (kv_lengths 0, or causal with a negative offset) gets zeros.
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    const int64_t row = warp_row0 + g + 8 * r;
    if (p.lse_out != nullptr && t == 0 && row < p.q_len)
      p.lse_out[(b * p.heads + h) * p.q_len + row] = total > 0.0f ? (row_max[r] + log2f(total)) * kLn2 : -INFINITY;
    uint32_t* dst = reinterpret_cast<uint32_t*>(q_s + (warp * 16 + g + 8 * r) * P + 2 * t);
#pragma unroll
    for (int nd = 0; nd < kDBlocks; ++nd) dst[nd * 4] = mma::pack2<T>(o[nd][2 * r] * inv, o[nd][2 * r + 1] * inv);
  }
  __syncthreads();
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int n = 0; n < kBlockM * kChunks / kThreads; ++n) {
    const int idx = tid + n * kThreads, r = idx / kChunks, c = (idx % kChunks) * 8;
    const int64_t row = q0 + r;
    if (row < p.q_len && c < head_dim)
      *reinterpret_cast<uint4*>(out + row * p.out_row_stride + c) = *reinterpret_cast<const uint4*>(q_s + r * P + c);
  }
}

// ---------------------------------------------------------------- launcher

namespace {

template <typename T, int D, bool kRelBias>
void launch_attention_mma(const AttentionParams& p, cudaStream_t stream) {
  constexpr size_t smem = mma_smem_bytes<D>();
  allow_shared_memory(reinterpret_cast<const void*>(attention_mma_kernel<T, D, kRelBias>), smem, "attention",
                      "head_dim " + std::to_string(p.head_dim));
  const dim3 grid(static_cast<unsigned>((p.q_len + kBlockM - 1) / kBlockM), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(p.batch));
  attention_mma_kernel<T, D, kRelBias><<<grid, kThreads, smem, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("attention_mma_kernel");
}

template <typename T, int D>
void launch_attention_mma(const AttentionParams& p, cudaStream_t stream) {
  if (p.rel_bias != nullptr) launch_attention_mma<T, D, true>(p, stream);
  else launch_attention_mma<T, D, false>(p, stream);
}

template <typename T>
void launch_attention_mma(const AttentionParams& p, cudaStream_t stream) {
  if (p.head_dim <= 32) launch_attention_mma<T, 32>(p, stream);
  else if (p.head_dim <= 64) launch_attention_mma<T, 64>(p, stream);
  else if (p.head_dim <= 96) launch_attention_mma<T, 96>(p, stream);
  else launch_attention_mma<T, 128>(p, stream);
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool attention_mma_supports(const AttentionParams& p) {
  if (p.dtype != DType::f16 && p.dtype != DType::bf16) return false;
  if (p.head_dim % 8 != 0 || p.head_dim > 128) return false;
  if (!(p.scale > 0.0f && p.scale < INFINITY)) return false;  // the row max is taken before scaling
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.out)) return false;
  for (int64_t stride : {p.q_batch_stride, p.q_row_stride, p.k_batch_stride, p.k_row_stride, p.v_batch_stride,
                         p.v_row_stride, p.out_batch_stride, p.out_row_stride})
    if (stride % 8 != 0) return false;
  return true;
}

bool attention_mma_forward(const AttentionParams& p, cudaStream_t stream) {
  if (!attention_mma_supports(p)) return false;
  if (p.dtype == DType::f16) launch_attention_mma<__half>(p, stream);
  else launch_attention_mma<__nv_bfloat16>(p, stream);
  return true;
}

}  // namespace tformer::cuda
