// Fused residual add + layer norm, one block per row, fp32 statistics:
//   s = x + bias + residual;  out = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta
// Two-pass (mean, then the mean of squared deviations) rather than E[s^2] - mean^2,
// which cancels badly when |mean| >> std. s is recomputed in each pass; the row's
// inputs are re-read from L1/L2. Outputs are written only in the last pass, each by
// the thread that read the same element, so out (and sum_out) may alias x or residual.
#include <algorithm>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "ops.h"
#include "reduce.cuh"

namespace tformer::cuda {

// ---------------------------------------------------------------- kernels

template <typename T>
__device__ __forceinline__ float layer_norm_input(const LayerNormParams& p, int64_t row_offset,
                                                  int64_t col) {
  float s = to_float(static_cast<const T*>(p.x)[row_offset + col]);
  if (p.bias != nullptr) s += to_float(static_cast<const T*>(p.bias)[col]);
  if (p.residual != nullptr) s += to_float(static_cast<const T*>(p.residual)[row_offset + col]);
  return s;
}

template <typename T>
__global__ void layer_norm_kernel(const LayerNormParams p) {
  __shared__ float scratch[32];
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);
  T* out = static_cast<T*>(p.out);
  T* sum_out = static_cast<T*>(p.sum_out);
  const float inv_cols = 1.0f / static_cast<float>(p.cols);

  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int64_t offset = row * p.cols;
    float sum = 0.0f;
    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) sum += layer_norm_input<T>(p, offset, c);
    const float mean = block_sum(sum, scratch) * inv_cols;

    float sq = 0.0f;
    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float d = layer_norm_input<T>(p, offset, c) - mean;
      sq += d * d;
    }
    const float var = block_sum(sq, scratch) * inv_cols;
    const float rstd = 1.0f / sqrtf(var + p.eps);
    if (threadIdx.x == 0) {  // training: saved for layer_norm_backward (train_reduce.cu)
      if (p.mean_out != nullptr) p.mean_out[row] = mean;
      if (p.rstd_out != nullptr) p.rstd_out[row] = rstd;
    }

    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float s = layer_norm_input<T>(p, offset, c);
      if (sum_out != nullptr) sum_out[offset + c] = from_float<T>(s);
      out[offset + c] = from_float<T>((s - mean) * rstd * to_float(gamma[c]) + to_float(beta[c]));
    }
    // block_sum's barriers order this row's last-pass writes before the next row's reads.
  }
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename T>
void launch_layer_norm(const LayerNormParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return;
  // A multiple of 32 (block_sum), up to 256 threads; small rows get one warp.
  const int threads = static_cast<int>(std::min<int64_t>((p.cols + 31) / 32 * 32, 256));
  const int64_t blocks = std::min<int64_t>(p.rows, 1 << 20);
  layer_norm_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("layer_norm_kernel");
}

}  // namespace

void layer_norm(const LayerNormParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::f32: return launch_layer_norm<float>(p, stream);
    case DType::f16: return launch_layer_norm<__half>(p, stream);
    case DType::bf16: return launch_layer_norm<__nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("layer_norm", p.dtype);
  }
}

}  // namespace tformer::cuda
