// Fused multi-head attention forward on CUDA cores, fp32 math:
//   out[b, i, h] = softmax_j(scale * q[b, i, h] . k[b, j, h], masked) @ v[b, :, h]
// with the online softmax of Milakov & Gimelshein (2018) as used by FlashAttention
// (Dao et al., 2022): keys are visited in tiles of 32, each query row keeps a running
// max, a running sum and an unnormalised output, and no (q_len, kv_len) buffer exists.
//
// One block = 4 warps = 16 query rows of one (batch, head); each warp owns 4 rows.
// Per key tile, the block stages K^T and V in shared memory (zeros past the visible
// keys and past head_dim), then each lane scores one key against the warp's 4 rows,
// and the warp accumulates P @ V with lanes splitting the head dimension.
// The head dimension is a template parameter D (padded: 32, 64, 96, 128, 192, 256),
// so the register accumulators are indexed with compile-time constants only.
// f16 / bf16 with q_len >= 2 and 16-byte aligned rows go to the tensor-core kernel of
// attention_mma.cu instead, decode steps (q_len 1) to attention_decode.cu; this one serves
// f32 and odd layouts.
//
// kv_group > 1 (beams sharing their sentence's encoder K/V): query batch b reads K/V
// batch b / kv_group. weights_out (alignments) comes from a second, separate kernel
// launched after the first: it recomputes the scores, which is cheap in the decoding
// step it serves (q_len 1), and keeps the main kernel's registers untouched.
// lse_out (training) is written by the main kernel from its running max and sum; the
// backward (train_attention.cu) recomputes the probabilities from it.
// rel_bias (T5's relative position bias, (span, heads)): every kernel takes it through a
// template flag, so attention without it runs the code it ran before; the bias (times
// log2(e), as the scores are log2-scaled) is read only for visible keys (attention_keys.cuh).
#include <cmath>
#include <stdexcept>
#include <string>

#include "attention_mma.h"
#include "attention_keys.cuh"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "launch_util.h"
#include "ops.h"
#include "reduce.cuh"

namespace tformer::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockQ = kWarps * kRowsPerWarp;  // query rows per block
constexpr int kBlockK = 32;                     // keys per tile: one per lane
constexpr int kKeyPitch = kBlockK + 1;          // K^T row pitch: +1 float against bank conflicts
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.69314718055994531f;
constexpr int kWeightsThreads = 256;

// Shared memory of one block: Q (kBlockQ, D), K^T (D, kKeyPitch), V (kBlockK, D), fp32.
template <int D>
constexpr size_t attention_smem_bytes() {
  return (size_t(kBlockQ) * D + size_t(D) * kKeyPitch + size_t(kBlockK) * D) * sizeof(float);
}


}  // namespace

// ---------------------------------------------------------------- kernels

template <typename T, int D, bool kRelBias>
__global__ void __launch_bounds__(kThreads) attention_kernel(const AttentionParams p) {
  static_assert(D % 32 == 0, "D is a multiple of the warp size");
  constexpr int kDimsPerLane = D / 32;
  extern __shared__ float4 smem[];  // float4: 16-byte aligned for the Q reads
  float* q_s = reinterpret_cast<float*>(smem);
  float* k_t = q_s + kBlockQ * D;
  float* v_s = k_t + D * kKeyPitch;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.z, h = blockIdx.y, kv_b = b / p.kv_group;
  const int64_t q0 = int64_t(blockIdx.x) * kBlockQ;
  const int head_dim = static_cast<int>(p.head_dim);
  const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.head_dim;
  const T* k = static_cast<const T*>(p.k) + kv_b * p.k_batch_stride + h * p.head_dim;
  const T* v = static_cast<const T*>(p.v) + kv_b * p.v_batch_stride + h * p.head_dim;
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + h * p.head_dim;

  // Keys any row of this block can see: [0, kv_end).
  int64_t kv_end = keys_of_batch(p, kv_b);
  if (p.causal) {
    const int64_t q_last = min64(q0 + kBlockQ, p.q_len) - 1;
    kv_end = min64(kv_end, max64(q_last + p.causal_offset + 1, 0));
  }

  // Stage the queries, times scale * log2(e) so that the softmax can use exp2.
  const float q_scale = p.scale * kLog2e;
  for (int idx = tid; idx < kBlockQ * D; idx += kThreads) {
    const int r = idx / D, d = idx % D;
    const int64_t i = q0 + r;
    q_s[idx] = (i < p.q_len && d < head_dim) ? to_float(q[i * p.q_row_stride + d]) * q_scale : 0.0f;
  }

  const int64_t row0 = q0 + warp * kRowsPerWarp;  // this warp's first query row
  const float* q_warp = q_s + warp * kRowsPerWarp * D;
  float acc[kRowsPerWarp][kDimsPerLane];  // lane holds dims lane + 32 t
  float row_max[kRowsPerWarp];            // running max of the log2-scaled scores
  float lane_sum[kRowsPerWarp];           // this lane's share of the running sum
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    row_max[r] = -INFINITY;
    lane_sum[r] = 0.0f;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) acc[r][t] = 0.0f;
  }

  for (int64_t j0 = 0; j0 < kv_end; j0 += kBlockK) {
    __syncthreads();  // Q is staged; every warp is done with the previous tile
    // Zeros past kv_end: padded keys then add exactly 0 (never 0 * NaN) to the output.
    for (int idx = tid; idx < kBlockK * D; idx += kThreads) {
      const int j = idx / D, d = idx % D;
      const int64_t key = j0 + j;
      const bool valid = key < kv_end && d < head_dim;
      k_t[d * kKeyPitch + j] = valid ? to_float(k[key * p.k_row_stride + d]) : 0.0f;
      v_s[j * D + d] = valid ? to_float(v[key * p.v_row_stride + d]) : 0.0f;
    }
    __syncthreads();

    // Warp-uniform skips: rows past q_len, or a tile wholly in the causal future.
    if (row0 >= p.q_len) continue;
    if (p.causal && j0 > row0 + (kRowsPerWarp - 1) + p.causal_offset) continue;

    // Scores of key j0 + lane against the warp's rows (K^T reads: one bank per lane;
    // Q reads: one float4 broadcast).
    float score[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) score[r] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < D; d += 4) {
      const float k0 = k_t[(d + 0) * kKeyPitch + lane];
      const float k1 = k_t[(d + 1) * kKeyPitch + lane];
      const float k2 = k_t[(d + 2) * kKeyPitch + lane];
      const float k3 = k_t[(d + 3) * kKeyPitch + lane];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float4 qv = *reinterpret_cast<const float4*>(q_warp + r * D + d);
        score[r] = fmaf(qv.x, k0, fmaf(qv.y, k1, fmaf(qv.z, k2, fmaf(qv.w, k3, score[r]))));
      }
    }

    // Online softmax update, per row.
    const int64_t key = j0 + lane;
    float prob[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const bool masked = key >= kv_end || (p.causal && key > row0 + r + p.causal_offset);
      float s = masked ? -INFINITY : score[r];
      if constexpr (kRelBias) {
        if (!masked && row0 + r < p.q_len) s += rel_bias_log2<T>(p, row0 + r, key, h);
      }
      const float new_max = fmaxf(row_max[r], warp_max(s));
      if (new_max == -INFINITY) {  // no visible key yet for this row (warp-uniform)
        prob[r] = 0.0f;
        continue;
      }
      const float correction = exp2f(row_max[r] - new_max);  // 0 on the first visible key
      prob[r] = exp2f(s - new_max);
      row_max[r] = new_max;
      lane_sum[r] = lane_sum[r] * correction + prob[r];
#pragma unroll
      for (int t = 0; t < kDimsPerLane; ++t) acc[r][t] *= correction;
    }

    // acc += P @ V: key j's probability is broadcast from lane j.
#pragma unroll 4
    for (int j = 0; j < kBlockK; ++j) {
      float vj[kDimsPerLane];
#pragma unroll
      for (int t = 0; t < kDimsPerLane; ++t) vj[t] = v_s[j * D + lane + 32 * t];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float pj = __shfl_sync(kFullMask, prob[r], j);
#pragma unroll
        for (int t = 0; t < kDimsPerLane; ++t) acc[r][t] = fmaf(pj, vj[t], acc[r][t]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const float total = warp_sum(lane_sum[r]);
    const int64_t i = row0 + r;
    if (i >= p.q_len) continue;
    // A row that sees no key (kv_lengths 0, or causal with a negative offset) gets zeros.
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    // Training: the natural-log normaliser, -inf for a row that saw no key.
    if (p.lse_out != nullptr && lane == 0)
      p.lse_out[(b * p.heads + h) * p.q_len + i] = total > 0.0f ? (row_max[r] + log2f(total)) * kLn2 : -INFINITY;
    T* dst = out + i * p.out_row_stride;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < head_dim) dst[d] = from_float<T>(acc[r][t] * inv);
    }
  }
}

// weights_out[b, i, j] = mean over heads of the softmax probability of key j, 0 for a
// masked key. One block per (query row i, batch b). Each thread owns keys
// j = tid, tid + blockDim, ...: pass 1 gives each head's log2 softmax denominator (a
// block reduction per head), pass 2 sums the heads' probabilities of the thread's own
// keys and writes each weight once: no atomics, no other writer.
// The visible keys of a row are a prefix [0, kv_end): lengths and causality both cut
// from the end. kPaged: keys through the row's block table (AttentionParams::block_table).
template <typename T, bool kRelBias, bool kPaged>
__global__ void __launch_bounds__(kWeightsThreads) attention_weights_kernel(const AttentionParams p) {
  extern __shared__ float4 smem[];
  float* q_s = reinterpret_cast<float*>(smem);  // (heads, head_dim), times scale * log2(e)
  float* lse_s = q_s + p.heads * p.head_dim;    // (heads): log2 of each head's denominator
  __shared__ float scratch[32];

  const int64_t i = blockIdx.x, b = blockIdx.y, kv_b = b / p.kv_group;
  float* w = p.weights_out + (b * p.q_len + i) * p.kv_len;
  int64_t kv_end = keys_of_batch(p, kv_b);
  if (p.causal) kv_end = max64(min64(kv_end, i + p.causal_offset + 1), 0);
  for (int64_t j = kv_end + threadIdx.x; j < p.kv_len; j += blockDim.x) w[j] = 0.0f;
  if (kv_end == 0) return;  // block-uniform: no barrier is skipped by only some threads

  const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + i * p.q_row_stride;
  const T* k = static_cast<const T*>(p.k);
  int64_t bias_origin = 0;
  if constexpr (kRelBias) bias_origin = rel_bias_origin_of(p, b);
  const float q_scale = p.scale * kLog2e;
  for (int64_t idx = threadIdx.x; idx < p.heads * p.head_dim; idx += blockDim.x)
    q_s[idx] = to_float(q[idx]) * q_scale;  // head h at column h * head_dim
  __syncthreads();

  // The log2-scaled score of key j in head h, in fp32 as in attention_kernel.
  auto score = [&](int64_t h, int64_t j) {
    const float* qh = q_s + h * p.head_dim;
    const T* kj = kv_row<kPaged>(p, k, p.k_batch_stride, p.k_row_stride, kv_b, j) + h * p.head_dim;
    float dot = 0.0f;
    for (int64_t d = 0; d < p.head_dim; ++d) dot = fmaf(qh[d], to_float(kj[d]), dot);
    if constexpr (kRelBias) dot += rel_bias_log2_at<T>(p, bias_origin, i, j, h);  // j < kv_end: visible
    return dot;
  };

  for (int64_t h = 0; h < p.heads; ++h) {
    float m = -INFINITY, s = 0.0f;  // this thread's running max and sum
    for (int64_t j = threadIdx.x; j < kv_end; j += blockDim.x) {
      const float x = score(h, j);
      const float new_m = fmaxf(m, x);
      s = s * exp2f(m - new_m) + exp2f(x - new_m);
      m = new_m;
    }
    const float row_m = block_max(m, scratch);  // finite: kv_end > 0
    const float row_s = block_sum(m == -INFINITY ? 0.0f : s * exp2f(m - row_m), scratch);
    if (threadIdx.x == 0) lse_s[h] = row_m + log2f(row_s);
  }
  __syncthreads();

  const float inv_heads = 1.0f / static_cast<float>(p.heads);
  for (int64_t j = threadIdx.x; j < kv_end; j += blockDim.x) {
    float sum = 0.0f;
    for (int64_t h = 0; h < p.heads; ++h) sum += exp2f(score(h, j) - lse_s[h]);
    w[j] = sum * inv_heads;
  }
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename T, int D, bool kRelBias>
void launch_attention(const AttentionParams& p, cudaStream_t stream) {
  constexpr size_t smem = attention_smem_bytes<D>();
  allow_shared_memory(reinterpret_cast<const void*>(attention_kernel<T, D, kRelBias>), smem, "attention",
                      "head_dim " + std::to_string(p.head_dim));
  const dim3 grid(static_cast<unsigned>((p.q_len + kBlockQ - 1) / kBlockQ),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  attention_kernel<T, D, kRelBias><<<grid, kThreads, smem, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("attention_kernel");
}

template <typename T, int D>
void launch_attention(const AttentionParams& p, cudaStream_t stream) {
  if (p.rel_bias != nullptr) launch_attention<T, D, true>(p, stream);
  else launch_attention<T, D, false>(p, stream);
}

template <typename T>
void launch_attention_weights(const AttentionParams& p, size_t smem, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.q_len), static_cast<unsigned>(p.batch));
  const bool paged = p.block_table != nullptr;
  if (p.rel_bias != nullptr && paged) attention_weights_kernel<T, true, true><<<grid, kWeightsThreads, smem, stream>>>(p);
  else if (p.rel_bias != nullptr) attention_weights_kernel<T, true, false><<<grid, kWeightsThreads, smem, stream>>>(p);
  else if (paged) attention_weights_kernel<T, false, true><<<grid, kWeightsThreads, smem, stream>>>(p);
  else attention_weights_kernel<T, false, false><<<grid, kWeightsThreads, smem, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("attention_weights_kernel");
}

template <typename T>
void launch_attention(const AttentionParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  // Every check before the first launch: an error leaves nothing half done.
  if (p.head_dim > 256) {
    throw std::invalid_argument("cuda attention: head_dim " + std::to_string(p.head_dim) +
                                " is not supported (at most 256)");
  }
  const size_t weights_smem = size_t(p.heads) * (p.head_dim + 1) * sizeof(float);
  if (p.weights_out != nullptr) {
    const bool paged = p.block_table != nullptr;
    const void* kernels[2][2] = {
        {reinterpret_cast<const void*>(attention_weights_kernel<T, false, false>),
         reinterpret_cast<const void*>(attention_weights_kernel<T, false, true>)},
        {reinterpret_cast<const void*>(attention_weights_kernel<T, true, false>),
         reinterpret_cast<const void*>(attention_weights_kernel<T, true, true>)}};
    allow_shared_memory(kernels[p.rel_bias != nullptr][paged], weights_smem, "attention",
                        "weights_out with " + std::to_string(p.heads) + " heads of " +
                            std::to_string(p.head_dim));
  }
  if (p.block_table != nullptr && p.q_len != 1)
    throw std::invalid_argument("cuda attention: paged K/V wants q_len 1, got " + std::to_string(p.q_len));
  if (p.q_len == 1) {
    attention_decode(p, allocator, stream);  // attention_decode.cu: split along the keys
  } else if (attention_mma_forward(p, stream)) {
    // f16 / bf16 prefill and training (head_dim <= 128, 16-byte aligned rows): tensor cores.
  } else if (p.head_dim <= 32) launch_attention<T, 32>(p, stream);
  else if (p.head_dim <= 64) launch_attention<T, 64>(p, stream);
  else if (p.head_dim <= 96) launch_attention<T, 96>(p, stream);
  else if (p.head_dim <= 128) launch_attention<T, 128>(p, stream);
  else if (p.head_dim <= 192) launch_attention<T, 192>(p, stream);
  else launch_attention<T, 256>(p, stream);
  if (p.weights_out != nullptr) launch_attention_weights<T>(p, weights_smem, stream);
}

}  // namespace

void attention(const AttentionParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (!dtype_is_float(p.dtype)) throw_unsupported_dtype("attention", p.dtype);
  if (p.kv_group < 1)
    throw std::invalid_argument("cuda attention: kv_group " + std::to_string(p.kv_group) + " must be at least 1");
  if (p.batch == 0 || p.heads == 0 || p.q_len == 0 || p.head_dim == 0) return;
  if (p.batch > 65535 || p.heads > 65535 || p.q_len > 0x7fffffff) {
    throw std::invalid_argument("cuda attention: batch " + std::to_string(p.batch) + " and heads " +
                                std::to_string(p.heads) + " must be at most 65535 each, q_len " +
                                std::to_string(p.q_len) + " at most 2^31 - 1");
  }
  switch (p.dtype) {
    case DType::f32: return launch_attention<float>(p, allocator, stream);
    case DType::f16: return launch_attention<__half>(p, allocator, stream);
    case DType::bf16: return launch_attention<__nv_bfloat16>(p, allocator, stream);
    default: throw_unsupported_dtype("attention", p.dtype);
  }
}

TFORMER_CUDA_OP(attention);

}  // namespace tformer::cuda
