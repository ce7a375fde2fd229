// T5's relative position bias (Raffel et al. 2020, section 2.1). Bucket ids are
// computed on the host exactly as transformers' T5Attention._relative_position_bucket
// computes them (float32 log, then truncation), uploaded once per forward or decode session,
// and the (span, heads) bias they select is gathered from the stack's table with the
// embedding op (whose backward then gives the table's gradient).
#pragma once

#include <cstdint>

#include "tformer/config.h"
#include "tformer/tensor.h"

namespace tformer {

// The bucket of relative position (key - query): bidirectional in encoders, causal in decoders
// (positive distances, future keys, all fall in bucket 0 there).
int32_t relative_position_bucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                                 int64_t max_distance);

// Buckets of the relative positions first, first + 1, ..., first + count - 1, into out (host).
void relative_position_buckets(int32_t* out, int64_t first, int64_t count, bool bidirectional,
                               int64_t num_buckets, int64_t max_distance);

// (span, heads) bias of the relative positions first .. first + span - 1, gathered from
// `table` (buckets, heads) on its device in its dtype: the AttentionOptions::rel_bias of a
// stack, whose entry for (query i, key j) is row origin + j - i with origin = -first.
Tensor relative_bias(const Tensor& table, int64_t first, int64_t span, bool bidirectional,
                     const TransformerConfig& cfg);

}  // namespace tformer
