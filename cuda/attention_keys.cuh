// Device helpers shared by the attention kernels (forward, tensor-core forward, decode
// step, both backwards): 64-bit min/max, the keys a padding mask leaves to a batch, and
// the relative position bias of a (query, key) pair.
#pragma once

#include <cstdint>

#include "dtype_convert.cuh"
#include "tformer/ops/attention.h"

namespace tformer::cuda {

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Keys of key/value batch kv_b that kv_lengths does not mask: [0, result); a negative
// length masks every key.
__device__ __forceinline__ int64_t keys_of_batch(const AttentionParams& p, int64_t kv_b) {
  return p.kv_lengths != nullptr ? min64(p.kv_len, max64(p.kv_lengths[kv_b], 0)) : p.kv_len;
}

// T5's relative position bias of query row i and key j in head h (p.rel_bias, (span,
// heads) of T), times log2(e) for the log2-scaled scores of the kernels. Read only for
// visible pairs: the caller guarantees those index inside the span (backend.h).
template <typename T>
__device__ __forceinline__ float rel_bias_log2(const AttentionParams& p, int64_t i, int64_t j, int64_t h) {
  return to_float(static_cast<const T*>(p.rel_bias)[(p.rel_bias_origin + j - i) * p.heads + h]) *
         1.4426950408889634f;
}

// The rel-bias origin of query batch b: its own with per-row origins (an engine step's rows
// sit at different positions), else the call's.
__device__ __forceinline__ int64_t rel_bias_origin_of(const AttentionParams& p, int64_t b) {
  return p.rel_bias_origins != nullptr ? p.rel_bias_origins[b] : p.rel_bias_origin;
}

// rel_bias_log2 with the origin given (rel_bias_origin_of, read once per row).
template <typename T>
__device__ __forceinline__ float rel_bias_log2_at(const AttentionParams& p, int64_t origin, int64_t i, int64_t j,
                                                  int64_t h) {
  return to_float(static_cast<const T*>(p.rel_bias)[(origin + j - i) * p.heads + h]) * 1.4426950408889634f;
}

// Row j (a key or value) of query batch b, column h * head_dim, in a K/V `base` of batch
// stride `batch_stride`: contiguous (batch b's rows), or paged (kPaged: block
// block_table[b, j / block_size] of the pool, AttentionParams::block_table).
template <bool kPaged, typename T>
__device__ __forceinline__ const T* kv_row(const AttentionParams& p, const T* base, int64_t batch_stride,
                                           int64_t row_stride, int64_t b, int64_t j) {
  if constexpr (kPaged) {  // 32-bit division (a row's keys number far below 2^31)
    const int32_t size = static_cast<int32_t>(p.block_size), jj = static_cast<int32_t>(j);
    const int64_t blk = p.block_table[b * p.blocks_per_row + jj / size];
    return base + blk * batch_stride + int64_t(jj % size) * row_stride;
  } else {
    return base + b * batch_stride + j * row_stride;
  }
}

}  // namespace tformer::cuda
