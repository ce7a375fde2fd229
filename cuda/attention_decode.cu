// Decode-step attention: one query row per (batch, head) against the whole K/V cache
// (q_len 1), on CUDA cores. The step is memory-bound (every key and value is read once
// and used for 2 * head_dim flops per query row), so the kernel is built around the
// loads: flash-decoding (Dao et al., 2023).
//
// Layout of a block (128 threads): the threads form groups of kGroup lanes (a power of
// two, <= 32, so a group lives in one warp); a group covers one key row with 16-byte
// loads (lane l of the group reads the chunks l, l + kGroup, ... of kVec elements) and
// reduces its partial dot products with kGroup-wide butterfly shuffles. Each group
// handles kUnroll keys per iteration (the block kGroups * kUnroll consecutive ones),
// issuing all K and V loads of the iteration before using any, and keeps its own online
// softmax state (running max, sum, unnormalised output over its lane's chunks). At the
// end the groups' states are merged through shared memory (log-sum-exp rescaling).
//
// kv_group > 1 (beams sharing their sentence's encoder K/V): a block serves up to R = 4
// query rows of one kv batch, so their shared K/V is read once, not once per beam. All
// rows of a block see the same keys (q_len 1: lengths and causal_offset are per kv batch).
//
// Split along the keys: when batch * heads (in blocks) does not fill the GPU (fewer than
// two blocks per multiprocessor), each (batch, head) is cut into up to kMaxSplits key
// ranges, one block each; the blocks write partial (unnormalised output, max, sum) to a
// temporary from the caching allocator (one allocation per call), and
// attention_decode_combine_kernel merges the splits and writes out / lse_out. With
// enough blocks, one pass writes out directly (no combine launch, no temporary).
//
// Loads are 16 bytes when k, v, their strides and head_dim allow (checked at launch:
// rows may be slices of a fused QKV buffer at any offset), else element by element (one
// query row per block then, even for beams sharing K/V).
// Semantics are AttentionParams' (backend.h), as attention_kernel's for q_len 1; a row
// that sees no key gets zeros and lse -inf. weights_out stays attention.cu's business.
// rel_bias (T5's decoder self-attention): a template flag; the bias of key j is the same
// for every row of a block (q_len 1, no batch dimension), so it is read once per key.
// Only the one-row kernels are instantiated with it (self-attention has kv_group 1).
// Paged K/V (AttentionParams::block_table, the engine's steps): a template flag too, one-row
// kernels only (kv_group 1); a key's row comes through the row's block table
// (attention_keys.cuh kv_row), everything else is the contiguous kernel's code. Per-row
// rel-bias origins (rel_bias_origins) are read once per block.
#include <algorithm>
#include <cstdint>
#include <optional>
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

constexpr int kDecodeThreads = 128;
constexpr int kCombineWarps = 4;
constexpr int64_t kMaxSplits = 64;
constexpr float kDecodeLog2e = 1.4426950408889634f;
constexpr float kDecodeLn2 = 0.69314718055994531f;

constexpr int group_lanes(int chunks) { return chunks > 16 ? 32 : chunks > 8 ? 16 : chunks > 4 ? 8 : 4; }

// The shape of the work for storage type T and padded head dimension D.
template <typename T, int D, int R>
struct DecodeShape {
  static constexpr int kVec = 16 / int(sizeof(T));      // elements per 16-byte load
  static constexpr int kChunks = D / kVec;              // chunks of a padded row
  static constexpr int kGroup = group_lanes(kChunks);   // lanes per key row
  static constexpr int kChunksPerLane = (kChunks + kGroup - 1) / kGroup;
  static constexpr int kGroups = kDecodeThreads / kGroup;
  // Keys in flight per group: fewer when the per-row registers are many.
  static constexpr int kUnroll = R * kChunksPerLane * kVec >= 32 ? 2 : 4;
  static constexpr int kKeysPerIteration = kGroups * kUnroll;
};

// Where the splits write: per (batch, head) row and split, head_dim unnormalised output
// values and (max, sum) of the log2-scaled scores. Null acc: no split.
struct DecodePartials {
  float* acc = nullptr;  // (batch * heads, splits, head_dim)
  float* ml = nullptr;   // (batch * heads, splits, 2)
  int64_t splits = 1;
  int64_t keys_per_split = 0;
};

// kVec elements of one row in their storage type, loaded at once or one by one.
template <typename T, int kVec>
struct alignas(16) Chunk {
  T x[kVec];
};

template <typename T, int kVec, bool kVector>
__device__ __forceinline__ void load_chunk(Chunk<T, kVec>& c, const T* row, int d0, int head_dim, bool valid) {
  if constexpr (kVector) {  // head_dim is a multiple of kVec: a chunk is whole or absent
    if (valid && d0 < head_dim) {
      *reinterpret_cast<uint4*>(&c) = *reinterpret_cast<const uint4*>(row + d0);
    } else {
      *reinterpret_cast<uint4*>(&c) = make_uint4(0u, 0u, 0u, 0u);
    }
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) c.x[e] = (valid && d0 + e < head_dim) ? row[d0 + e] : T(0.0f);
  }
}


}  // namespace

// ---------------------------------------------------------------- kernels

// grid (splits, heads, kv batches * ceil(kv_group / R)).
template <typename T, int D, int R, bool kVector, bool kRelBias, bool kPaged>
__global__ void __launch_bounds__(kDecodeThreads) attention_decode_kernel(const AttentionParams p,
                                                                         const DecodePartials part) {
  using S = DecodeShape<T, D, R>;
  constexpr int kVec = S::kVec, kGroup = S::kGroup, kCpl = S::kChunksPerLane, kGroups = S::kGroups;
  constexpr int kUnroll = S::kUnroll;
  __shared__ float group_max[R][kGroups];
  __shared__ float group_sum[R][kGroups];
  __shared__ float group_acc[R][kGroups][D];

  const int tid = threadIdx.x, group = tid / kGroup, glane = tid % kGroup;
  const int head_dim = static_cast<int>(p.head_dim);
  const int64_t h = blockIdx.y, row_blocks = (p.kv_group + R - 1) / R;
  const int64_t kv_b = blockIdx.z / row_blocks;
  const int64_t b0 = kv_b * p.kv_group + (blockIdx.z % row_blocks) * R;  // first query batch
  const int64_t b_end = min64(p.batch, (kv_b + 1) * p.kv_group);  // past this kv batch's last
  // Paged: the pools' column h * head_dim, each key's block found through the table.
  const T* k = static_cast<const T*>(p.k) + (kPaged ? 0 : kv_b * p.k_batch_stride) + h * p.head_dim;
  const T* v = static_cast<const T*>(p.v) + (kPaged ? 0 : kv_b * p.v_batch_stride) + h * p.head_dim;
  int64_t bias_origin = 0;
  if constexpr (kRelBias) bias_origin = rel_bias_origin_of(p, b0);  // R == 1: one row

  // The keys every row of the block sees: [0, kv_end); this split's share of them.
  int64_t kv_end = keys_of_batch(p, kv_b);
  if (p.causal) kv_end = min64(kv_end, max64(p.causal_offset + 1, 0));
  const int64_t split = blockIdx.x;
  const int64_t key_begin = part.acc != nullptr ? split * part.keys_per_split : 0;
  const int64_t key_end = part.acc != nullptr ? min64(kv_end, key_begin + part.keys_per_split) : kv_end;

  // The queries (lane's chunks), times scale * log2(e) so that the softmax can use exp2.
  const float q_scale = p.scale * kDecodeLog2e;
  float q[R][kCpl][kVec];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const bool row_valid = b0 + r < b_end;
    const T* qr = static_cast<const T*>(p.q) + (row_valid ? (b0 + r) * p.q_batch_stride + h * p.head_dim : 0);
#pragma unroll
    for (int t = 0; t < kCpl; ++t) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const int d = (glane + kGroup * t) * kVec + e;
        q[r][t][e] = row_valid && d < head_dim ? to_float(qr[d]) * q_scale : 0.0f;
      }
    }
  }

  float acc[R][kCpl][kVec];
  float row_max[R], row_sum[R];  // the group's, identical on its lanes
#pragma unroll
  for (int r = 0; r < R; ++r) {
    row_max[r] = -INFINITY, row_sum[r] = 0.0f;
#pragma unroll
    for (int t = 0; t < kCpl; ++t)
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[r][t][e] = 0.0f;
  }

  // Block-uniform trip count: every lane reaches every shuffle.
  for (int64_t j0 = key_begin; j0 < key_end; j0 += S::kKeysPerIteration) {
    Chunk<T, kVec> kc[kUnroll][kCpl], vc[kUnroll][kCpl];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t key = j0 + u * kGroups + group;
      const bool valid = key < key_end;
      const T* kr = k;
      const T* vr = v;
      if constexpr (kPaged) {  // the table entries of masked keys are never read
        if (valid) kr = kv_row<true>(p, k, p.k_batch_stride, p.k_row_stride, kv_b, key);
        if (valid) vr = kv_row<true>(p, v, p.v_batch_stride, p.v_row_stride, kv_b, key);
      } else {
        kr = k + (valid ? key * p.k_row_stride : 0);
        vr = v + (valid ? key * p.v_row_stride : 0);
      }
#pragma unroll
      for (int t = 0; t < kCpl; ++t) {
        const int d0 = (glane + kGroup * t) * kVec;
        load_chunk<T, kVec, kVector>(kc[u][t], kr, d0, head_dim, valid);
        load_chunk<T, kVec, kVector>(vc[u][t], vr, d0, head_dim, valid);
      }
    }

    float score[R][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t key = j0 + u * kGroups + group;
      float bias = 0.0f;  // added only with kRelBias: the plain kernel's scores are untouched
      if constexpr (kRelBias) {
        if (key < key_end) bias = rel_bias_log2_at<T>(p, bias_origin, 0, key, h);
      }
      float kf[kCpl][kVec];
#pragma unroll
      for (int t = 0; t < kCpl; ++t)
#pragma unroll
        for (int e = 0; e < kVec; ++e) kf[t][e] = to_float(kc[u][t].x[e]);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float s = 0.0f;
#pragma unroll
        for (int t = 0; t < kCpl; ++t)
#pragma unroll
          for (int e = 0; e < kVec; ++e) s = fmaf(q[r][t][e], kf[t][e], s);
#pragma unroll
        for (int offset = kGroup / 2; offset > 0; offset >>= 1) s += __shfl_xor_sync(kFullMask, s, offset);
        if constexpr (kRelBias) s += bias;
        score[r][u] = key < key_end ? s : -INFINITY;
      }
    }

#pragma unroll
    for (int r = 0; r < R; ++r) {
      float new_max = row_max[r];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) new_max = fmaxf(new_max, score[r][u]);
      if (new_max == -INFINITY) continue;  // no key of this group yet (group-uniform)
      const float correction = exp2f(row_max[r] - new_max);  // 0 on the group's first key
      row_max[r] = new_max;
      float prob[kUnroll];
      float sum = row_sum[r] * correction;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) sum += (prob[u] = exp2f(score[r][u] - new_max));
      row_sum[r] = sum;
#pragma unroll
      for (int t = 0; t < kCpl; ++t)
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          float a = acc[r][t][e] * correction;
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) a = fmaf(prob[u], to_float(vc[u][t].x[e]), a);  // 0 * 0 past the end
          acc[r][t][e] = a;
        }
    }
  }

  // Merge the groups: rescale each to the block's max, then sum through shared memory.
  if (glane == 0) {
#pragma unroll
    for (int r = 0; r < R; ++r) group_max[r][group] = row_max[r];
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float m = -INFINITY;
    for (int g = 0; g < kGroups; ++g) m = fmaxf(m, group_max[r][g]);
    const float f = row_max[r] == -INFINITY ? 0.0f : exp2f(row_max[r] - m);
    if (glane == 0) group_sum[r][group] = row_sum[r] * f;
#pragma unroll
    for (int t = 0; t < kCpl; ++t) {
      const int c = glane + kGroup * t;
      if (c < S::kChunks) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) group_acc[r][group][c * kVec + e] = acc[r][t][e] * f;
      }
    }
  }
  __syncthreads();

  for (int idx = tid; idx < R * head_dim; idx += kDecodeThreads) {
    const int r = idx / head_dim, d = idx % head_dim;
    const int64_t b = b0 + r;
    if (b >= b_end) continue;
    float o = 0.0f, total = 0.0f, m = -INFINITY;
    for (int g = 0; g < kGroups; ++g) {
      o += group_acc[r][g][d], total += group_sum[r][g];
      m = fmaxf(m, group_max[r][g]);
    }
    const int64_t row = b * p.heads + h;
    if (part.acc != nullptr) {
      part.acc[(row * part.splits + split) * head_dim + d] = o;
      if (d == 0) {
        part.ml[2 * (row * part.splits + split)] = m;
        part.ml[2 * (row * part.splits + split) + 1] = total;
      }
      continue;
    }
    // A row that sees no key gets zeros; lse in natural log, -inf without a key.
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + h * p.head_dim;
    out[d] = from_float<T>(o * inv);
    if (d == 0 && p.lse_out != nullptr) p.lse_out[row] = total > 0.0f ? (m + log2f(total)) * kDecodeLn2 : -INFINITY;
  }
}

// Merges the splits of each (batch, head) row: one warp per row, lanes over the splits
// for the max and sum, then over head_dim for the output. grid (ceil(rows / 4)).
template <typename T>
__global__ void __launch_bounds__(kCombineWarps * 32) attention_decode_combine_kernel(const AttentionParams p,
                                                                                     const DecodePartials part) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = int64_t(blockIdx.x) * kCombineWarps + warp;
  if (row >= p.batch * p.heads) return;  // the whole warp: only warp shuffles follow
  const float* ml = part.ml + 2 * row * part.splits;
  const float* acc = part.acc + row * part.splits * p.head_dim;
  float m = -INFINITY;
  for (int64_t s = lane; s < part.splits; s += 32) m = fmaxf(m, ml[2 * s]);
  m = warp_max(m);
  // The weight of split s is 2^(max_s - m); 0 for a split that saw no key.
  auto weight = [&](int64_t s) { return ml[2 * s] == -INFINITY ? 0.0f : exp2f(ml[2 * s] - m); };
  float total = 0.0f;
  for (int64_t s = lane; s < part.splits; s += 32) total += ml[2 * s + 1] * weight(s);
  total = warp_sum(total);

  const int64_t b = row / p.heads, h = row % p.heads;
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + h * p.head_dim;
  const float inv = total > 0.0f ? 1.0f / total : 0.0f;
  for (int64_t d = lane; d < p.head_dim; d += 32) {
    float o = 0.0f;
    for (int64_t s = 0; s < part.splits; ++s) o = fmaf(acc[s * p.head_dim + d], weight(s), o);
    out[d] = from_float<T>(o * inv);
  }
  if (lane == 0 && p.lse_out != nullptr) p.lse_out[row] = total > 0.0f ? (m + log2f(total)) * kDecodeLn2 : -INFINITY;
}

// ---------------------------------------------------------------- launchers

namespace {

// 16-byte loads of a row slice need its base, strides and head_dim in whole 16 bytes.
bool rows_aligned(const void* base, int64_t batch_stride, int64_t row_stride, int64_t head_dim, int64_t vec) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && batch_stride % vec == 0 && row_stride % vec == 0 &&
         head_dim % vec == 0;
}

int multiprocessor_count() {
  int device = 0, sms = 0;
  TFORMER_CUDA_CHECK(cudaGetDevice(&device));
  TFORMER_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms > 0 ? sms : 1;
}

template <typename T, int D, int R, bool kVector, bool kRelBias, bool kPaged>
void launch_decode(const AttentionParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  using S = DecodeShape<T, D, R>;
  const int64_t row_blocks = (p.kv_group + R - 1) / R;
  const int64_t kv_batches = (p.batch + p.kv_group - 1) / p.kv_group;
  const int64_t blocks = p.heads * kv_batches * row_blocks;  // of one pass over all keys

  // Split the keys when one pass has fewer than two blocks per multiprocessor (a block
  // keeps about 16 KiB of loads in flight; HBM wants ~20 KiB per SM): aim at four, with
  // at least two iterations of the block per split.
  DecodePartials part;
  const int64_t sms = multiprocessor_count();
  if (blocks < 2 * sms && p.kv_len > 0) {
    const int64_t wanted = (4 * sms + blocks - 1) / blocks;
    const int64_t most = std::max<int64_t>(1, p.kv_len / (2 * S::kKeysPerIteration));
    part.splits = std::min({wanted, most, kMaxSplits});
  }
  if (part.splits > 1) {
    const int64_t per_split = (p.kv_len + part.splits - 1) / part.splits;
    part.keys_per_split = (per_split + S::kKeysPerIteration - 1) / S::kKeysPerIteration * S::kKeysPerIteration;
    part.splits = (p.kv_len + part.keys_per_split - 1) / part.keys_per_split;
  }
  const bool split = part.splits > 1;
  const int64_t rows = p.batch * p.heads;
  const size_t acc_floats = split ? size_t(rows * part.splits * p.head_dim) : 0;
  std::optional<ScopedBlock> partials;  // one temporary per call, none without a split
  if (split) {
    partials.emplace(allocator, (acc_floats + size_t(2 * rows * part.splits)) * sizeof(float));
    part.acc = partials->as<float>(), part.ml = part.acc + acc_floats;
  }

  const dim3 grid(static_cast<unsigned>(part.splits), static_cast<unsigned>(p.heads),
                  static_cast<unsigned>(kv_batches * row_blocks));
  attention_decode_kernel<T, D, R, kVector, kRelBias, kPaged><<<grid, kDecodeThreads, 0, stream>>>(p, part);
  TFORMER_CUDA_CHECK_LAUNCH("attention_decode_kernel");
  if (!split) return;
  const unsigned combine_blocks = static_cast<unsigned>((rows + kCombineWarps - 1) / kCombineWarps);
  attention_decode_combine_kernel<T><<<combine_blocks, kCombineWarps * 32, 0, stream>>>(p, part);
  TFORMER_CUDA_CHECK_LAUNCH("attention_decode_combine_kernel");
}

template <typename T, int D>
void launch_decode(const AttentionParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  const int64_t vec = 16 / int64_t(sizeof(T));
  const bool vector = rows_aligned(p.k, p.k_batch_stride, p.k_row_stride, p.head_dim, vec) &&
                      rows_aligned(p.v, p.v_batch_stride, p.v_row_stride, p.head_dim, vec);
  // Beams sharing K/V: up to 4 query rows per block (grid z <= 65535). The rare
  // misaligned rows take the one-row kernel only, which halves the instantiations.
  const int64_t kv_batches = (p.batch + p.kv_group - 1) / p.kv_group;
  if (p.block_table != nullptr) {  // paged: kv_group 1, one row per block
    if (p.rel_bias != nullptr) {
      if (vector) launch_decode<T, D, 1, true, true, true>(p, allocator, stream);
      else launch_decode<T, D, 1, false, true, true>(p, allocator, stream);
    } else if (vector) {
      launch_decode<T, D, 1, true, false, true>(p, allocator, stream);
    } else {
      launch_decode<T, D, 1, false, false, true>(p, allocator, stream);
    }
  } else if (p.rel_bias != nullptr) {  // one row per block (see the top)
    if (vector) launch_decode<T, D, 1, true, true, false>(p, allocator, stream);
    else launch_decode<T, D, 1, false, true, false>(p, allocator, stream);
  } else if (vector && p.kv_group > 1 && kv_batches * ((p.kv_group + 3) / 4) <= 65535) {
    launch_decode<T, D, 4, true, false, false>(p, allocator, stream);
  } else if (vector) {
    launch_decode<T, D, 1, true, false, false>(p, allocator, stream);
  } else {
    launch_decode<T, D, 1, false, false, false>(p, allocator, stream);
  }
}

template <typename T>
void launch_decode(const AttentionParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.head_dim <= 32) launch_decode<T, 32>(p, allocator, stream);
  else if (p.head_dim <= 64) launch_decode<T, 64>(p, allocator, stream);
  else if (p.head_dim <= 96) launch_decode<T, 96>(p, allocator, stream);
  else if (p.head_dim <= 128) launch_decode<T, 128>(p, allocator, stream);
  else if (p.head_dim <= 192) launch_decode<T, 192>(p, allocator, stream);
  else launch_decode<T, 256>(p, allocator, stream);
}

}  // namespace

void attention_decode(const AttentionParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.block_table != nullptr && (p.kv_group != 1 || p.block_size < 1))
    throw std::invalid_argument("cuda attention_decode: paged K/V wants kv_group 1 and block_size >= 1, got " +
                                std::to_string(p.kv_group) + " and " + std::to_string(p.block_size));
  if (p.q_len != 1 || p.head_dim > 256 || p.kv_group < 1)
    throw std::invalid_argument("cuda attention_decode: q_len " + std::to_string(p.q_len) + ", head_dim " +
                                std::to_string(p.head_dim) + ", kv_group " + std::to_string(p.kv_group) +
                                " (wants q_len 1, head_dim <= 256, kv_group >= 1)");
  if (p.batch == 0 || p.heads == 0 || p.head_dim == 0) return;
  switch (p.dtype) {
    case DType::f32: return launch_decode<float>(p, allocator, stream);
    case DType::f16: return launch_decode<__half>(p, allocator, stream);
    case DType::bf16: return launch_decode<__nv_bfloat16>(p, allocator, stream);
    default: throw_unsupported_dtype("attention", p.dtype);
  }
}

}  // namespace tformer::cuda
