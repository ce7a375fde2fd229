// Device helpers shared by the attention kernels (forward, tensor-core forward, decode
// step, both backwards): 64-bit min/max, and the keys a padding mask leaves to a batch.
#pragma once

#include <cstdint>

#include "tformer/ops/attention.h"

namespace tformer::cuda {

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Keys of key/value batch kv_b that kv_lengths does not mask: [0, result); a negative
// length masks every key.
__device__ __forceinline__ int64_t keys_of_batch(const AttentionParams& p, int64_t kv_b) {
  return p.kv_lengths != nullptr ? min64(p.kv_len, max64(p.kv_lengths[kv_b], 0)) : p.kv_len;
}

}  // namespace tformer::cuda
