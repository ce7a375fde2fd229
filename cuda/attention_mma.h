// The tensor-core attention forward (attention_mma.cu), called by attention.cu's launcher.
#pragma once

#include <driver_types.h>

#include "tformer/ops/attention.h"

namespace tformer::cuda {

// Whether the mma.sync forward takes `p`: f16 or bf16, head_dim a multiple of 8 and at
// most 128, a finite scale > 0, q / k / v / out 16-byte aligned with every stride a
// multiple of 8 elements (cp.async and the output stores move 16 bytes).
bool attention_mma_supports(const AttentionParams& p);

// Launches the mma.sync forward and returns true when attention_mma_supports(p); else
// returns false, launching nothing: the caller then uses the CUDA-core kernel.
// weights_out is not written here (attention.cu's separate kernel does that).
bool attention_mma_forward(const AttentionParams& p, cudaStream_t stream);

}  // namespace tformer::cuda
