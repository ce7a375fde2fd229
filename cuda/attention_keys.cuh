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

}  // namespace tformer::cuda
