// Cross-entropy with label smoothing fused with its gradient, one block per row (grid-
// stride), fp32 statistics; torch's cross_entropy(label_smoothing=eps, ignore_index,
// reduction="none"), as the CPU kernel (cpp/ops/kernels/cross_entropy.cpp):
//   loss = (1 - eps) * (lse - x[label]) + eps * (lse - mean(x)),  lse = log sum exp x;
//   dlogits = (softmax(x) - (1 - eps) * onehot(label) - eps / V) * grad_scale.
// Two passes over the row for the statistics (the max, then sum exp(x - max) and sum x)
// and one for the gradient. dlogits may alias logits: x[label] is read before the first
// block barrier, every other element is read and then written by the same thread, and
// the gradient pass starts after the last barrier.
#include <algorithm>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "ops.h"
#include "tformer/ops/cross_entropy.h"
#include "reduce.cuh"

namespace tformer::cuda {

template <typename T>
__global__ void cross_entropy_kernel(const CrossEntropyParams p) {
  __shared__ float scratch[32];
  const int64_t V = p.vocab;
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const T* x = static_cast<const T*>(p.logits) + row * V;
    T* dx = p.dlogits != nullptr ? static_cast<T*>(p.dlogits) + row * V : nullptr;
    const int32_t label = p.labels[row];  // block-uniform
    if (label == p.ignore_index) {
      if (threadIdx.x == 0) p.loss[row] = 0.0f;
      if (dx != nullptr)
        for (int64_t c = threadIdx.x; c < V; c += blockDim.x) dx[c] = from_float<T>(0.0f);
      continue;
    }
    const float x_label = to_float(x[label]);  // before any barrier, so before any write
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) m = fmaxf(m, to_float(x[c]));
    m = block_max(m, scratch);
    float sum = 0.0f, sum_x = 0.0f;
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
      const float v = to_float(x[c]);
      sum += expf(v - m);
      sum_x += v;
    }
    sum = block_sum(sum, scratch);
    sum_x = block_sum(sum_x, scratch);
    const float lse = m + logf(sum);
    const float eps = p.smoothing;
    if (threadIdx.x == 0) {
      float loss = (1.0f - eps) * (lse - x_label);
      if (eps != 0.0f) loss += eps * (lse - sum_x / static_cast<float>(V));  // 0 * inf would be NaN
      p.loss[row] = loss;
    }
    if (dx == nullptr) continue;
    const float scale = p.grad_scale, uniform = eps / static_cast<float>(V);
    const float hit = (1.0f - eps) * scale;
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
      float g = (expf(to_float(x[c]) - lse) - uniform) * scale;
      if (c == label) g -= hit;
      dx[c] = from_float<T>(g);
    }
    // The next row's block_max barrier orders this row's writes before its reads: the
    // rows are disjoint anyway.
  }
}

namespace {

template <typename T>
void launch_cross_entropy(const CrossEntropyParams& p, cudaStream_t stream) {
  const int threads = static_cast<int>(std::min<int64_t>((p.vocab + 31) / 32 * 32, 512));
  const int64_t blocks = std::min<int64_t>(p.rows, 1 << 20);
  cross_entropy_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("cross_entropy_kernel");
}

}  // namespace

void cross_entropy(const CrossEntropyParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.vocab <= 0) return;
  switch (p.dtype) {
    case DType::f32: return launch_cross_entropy<float>(p, stream);
    case DType::f16: return launch_cross_entropy<__half>(p, stream);
    case DType::bf16: return launch_cross_entropy<__nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("cross_entropy", p.dtype);
  }
}

TFORMER_CUDA_OP(cross_entropy);

}  // namespace tformer::cuda
