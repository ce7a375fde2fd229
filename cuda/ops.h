// The CUDA op launchers, one per op family (cuda/<family>.cu). Each takes the plain
// params struct of backend.h and the device's stream; arguments were checked by the
// core before the call. They throw std::invalid_argument for an unsupported dtype or
// size, and std::runtime_error (TFORMER_CUDA_CHECK) when CUDA reports an error.
//
// Device-neutral on purpose: only declarations, over opaque handle types, so that the
// real build (nvcc) and the CPU emulator (bench/gpu/emulate, g++) compile the launchers
// against this one header. Keep CUDA runtime calls, cuBLAS and the allocator's
// definition out of it (cuda_check.h, launch_util.h, allocator.h hold those).
#pragma once

#include <driver_types.h>  // cudaStream_t: a type only, no runtime API

#include "tformer/backend.h"

// cuBLAS's opaque handle, declared as cublas_api.h declares it (an identical typedef).
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

namespace tformer::cuda {

class CachingAllocator;  // allocator.h (the emulator: bench/gpu/emulate/emu_runtime.h)

void gemm(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream);
void bias_act(const BiasActParams& p, cudaStream_t stream);
// gated_act.cu (with its backward, below).
void gated_act(const GatedActParams& p, cudaStream_t stream);
void layer_norm(const LayerNormParams& p, cudaStream_t stream);
void embedding(const EmbeddingParams& p, cudaStream_t stream);
// attention.cu; q_len 1 goes to attention_decode (attention_decode.cu), whose key splits
// take their temporary from `allocator`.
void attention(const AttentionParams& p, CachingAllocator& allocator, cudaStream_t stream);
void attention_decode(const AttentionParams& p, CachingAllocator& allocator, cudaStream_t stream);
void cast(const CastParams& p, cudaStream_t stream);
// rows.cu. gather_rows takes its temporary from `allocator` (the stream's device's).
void gather_rows(const GatherRowsParams& p, CachingAllocator& allocator, cudaStream_t stream);
void copy_2d(const Copy2dParams& p, cudaStream_t stream);

// Training kernels (train_*.cu). Those that take `allocator` draw temporaries from it.
void layer_norm_backward(const LayerNormBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream);
void bias_act_backward(const BiasActBackwardParams& p, cudaStream_t stream);
void gated_act_backward(const GatedActBackwardParams& p, cudaStream_t stream);
void sum_rows(const SumRowsParams& p, CachingAllocator& allocator, cudaStream_t stream);
void attention_backward(const AttentionBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream);
// train_attention_mma.cu: the tensor-core path attention_backward takes when it applies.
bool attention_backward_mma_supported(const AttentionBackwardParams& p);
void attention_backward_mma(const AttentionBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream);
void embedding_backward(const EmbeddingBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream);
void cross_entropy(const CrossEntropyParams& p, cudaStream_t stream);
void dropout(const DropoutParams& p, cudaStream_t stream);
void adamw(const AdamWParams& p, cudaStream_t stream);
// Enqueues the sum and its copy to *host_result (host memory); valid once the stream
// has been synchronised.
void sum_squares(const SumSquaresParams& p, CachingAllocator& allocator, cudaStream_t stream, double* host_result);

}  // namespace tformer::cuda
