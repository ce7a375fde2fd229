// Layer norm, forward and backward.
// Forward: fused residual add + layer norm, one block per row, fp32 statistics:
//   s = x + bias + residual;  out = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta
// Two-pass (mean, then the mean of squared deviations) rather than E[s^2] - mean^2,
// which cancels badly when |mean| >> std. s is recomputed in each pass; the row's
// inputs are re-read from L1/L2. Outputs are written only in the last pass, each by
// the thread that read the same element, so out (and sum_out) may alias x or residual.
// Backward, deterministic (no float atomics): ds per row (one block per row, two block
// sums), and dgamma += sum_r dout * xhat, dbeta += sum_r dout across rows (column_sums.cuh).
// RMSNorm (T5, params' rms): a template flag kRms, so layer norm's kernels are unchanged:
// rstd = 1 / sqrt(mean(s^2) + eps) in one pass, out = s * rstd * gamma (no beta);
// backward ds = rstd * (g - xhat * mean(g * xhat)) with xhat = s * rstd, dgamma only.
#include <algorithm>
#include <stdexcept>

#include "column_sums.cuh"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "launch_util.h"
#include "ops.h"
#include "tformer/ops/layer_norm.h"
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

template <typename T, bool kRms>
__global__ void layer_norm_kernel(const LayerNormParams p) {
  __shared__ float scratch[32];
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);
  T* out = static_cast<T*>(p.out);
  T* sum_out = static_cast<T*>(p.sum_out);
  const float inv_cols = 1.0f / static_cast<float>(p.cols);

  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int64_t offset = row * p.cols;
    float mean = 0.0f;  // RMSNorm: no mean subtracted
    if constexpr (!kRms) {
      float sum = 0.0f;
      for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) sum += layer_norm_input<T>(p, offset, c);
      mean = block_sum(sum, scratch) * inv_cols;
    }

    float sq = 0.0f;
    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float d = layer_norm_input<T>(p, offset, c) - mean;
      sq += d * d;
    }
    const float var = block_sum(sq, scratch) * inv_cols;
    const float rstd = 1.0f / sqrtf(var + p.eps);
    if (threadIdx.x == 0) {  // training: saved for layer_norm_backward (below); RMSNorm's mean is 0
      if (p.mean_out != nullptr) p.mean_out[row] = mean;
      if (p.rstd_out != nullptr) p.rstd_out[row] = rstd;
    }

    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float s = layer_norm_input<T>(p, offset, c);
      if (sum_out != nullptr) sum_out[offset + c] = from_float<T>(s);
      if constexpr (kRms) out[offset + c] = from_float<T>(s * rstd * to_float(gamma[c]));
      else out[offset + c] = from_float<T>((s - mean) * rstd * to_float(gamma[c]) + to_float(beta[c]));
    }
    // block_sum's barriers order this row's last-pass writes before the next row's reads.
  }
}

// ---------------------------------------------------------------- backward kernels

// ds = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * gamma, per row; one
// block per row (grid-stride). Each element of ds is written by the thread that read
// the same element of dout, so ds may alias dout. kRms: mean(g) is not subtracted, xhat = s * rstd.
template <typename T, bool kRms>
__global__ void layer_norm_backward_rows_kernel(const LayerNormBackwardParams p) {
  __shared__ float scratch[32];
  const T* dout = static_cast<const T*>(p.dout);
  const T* s = static_cast<const T*>(p.s);
  const T* gamma = static_cast<const T*>(p.gamma);
  T* ds = static_cast<T*>(p.ds);
  const float inv_cols = 1.0f / static_cast<float>(p.cols);
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int64_t offset = row * p.cols;
    const float mean = kRms ? 0.0f : p.mean[row], rstd = p.rstd[row];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float xhat = (to_float(s[offset + c]) - mean) * rstd;
      const float g = to_float(dout[offset + c]) * to_float(gamma[c]);
      sum_g += g;
      sum_gx += g * xhat;
    }
    const float mg = kRms ? 0.0f : block_sum(sum_g, scratch) * inv_cols;
    const float mgx = block_sum(sum_gx, scratch) * inv_cols;
    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float xhat = (to_float(s[offset + c]) - mean) * rstd;
      float v = rstd * (to_float(dout[offset + c]) * to_float(gamma[c]) - mg - xhat * mgx);
      if (p.accumulate) v += to_float(ds[offset + c]);
      ds[offset + c] = from_float<T>(v);
    }
  }
}

// Layer norm's parameter gradients: dout * xhat (dgamma) and dout (dbeta).
template <typename T>
struct LayerNormParamValues {
  static constexpr int N = 2;
  const T* dout;
  const T* s;
  const float* mean;
  const float* rstd;
  int64_t cols;
  __device__ void operator()(int64_t r, int64_t c, float (&v)[N]) const {
    const float dy = to_float(dout[r * cols + c]);
    v[0] = dy * ((to_float(s[r * cols + c]) - mean[r]) * rstd[r]);
    v[1] = dy;
  }
};

// RMSNorm's one parameter gradient: dout * s * rstd (dgamma).
template <typename T>
struct RmsNormParamValues {
  static constexpr int N = 1;
  const T* dout;
  const T* s;
  const float* rstd;
  int64_t cols;
  __device__ void operator()(int64_t r, int64_t c, float (&v)[N]) const {
    v[0] = to_float(dout[r * cols + c]) * (to_float(s[r * cols + c]) * rstd[r]);
  }
};

// ---------------------------------------------------------------- launchers

namespace {

template <typename T>
void launch_layer_norm(const LayerNormParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return;
  if (p.rms && p.beta != nullptr) throw std::invalid_argument("cuda layer_norm: rms takes no beta");
  // A multiple of 32 (block_sum), up to 256 threads; small rows get one warp.
  const int threads = static_cast<int>(std::min<int64_t>((p.cols + 31) / 32 * 32, 256));
  const int64_t blocks = std::min<int64_t>(p.rows, 1 << 20);
  if (p.rms) layer_norm_kernel<T, true><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  else layer_norm_kernel<T, false><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("layer_norm_kernel");
}

template <typename T, typename G>
void layer_norm_param_grads(const LayerNormBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.rms) {
    RmsNormParamValues<T> f{static_cast<const T*>(p.dout), static_cast<const T*>(p.s), p.rstd, p.cols};
    column_sums<G>(f, p.rows, p.cols, static_cast<G*>(p.dgamma), static_cast<G*>(nullptr), allocator, stream);
    return;
  }
  LayerNormParamValues<T> f{static_cast<const T*>(p.dout), static_cast<const T*>(p.s), p.mean, p.rstd, p.cols};
  column_sums<G>(f, p.rows, p.cols, static_cast<G*>(p.dgamma), static_cast<G*>(p.dbeta), allocator, stream);
}

template <typename T>
void launch_layer_norm_backward(const LayerNormBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  // The parameter gradients first: they read dout, which ds may alias.
  if (p.dgamma != nullptr || p.dbeta != nullptr) {
    if (p.grad_f32) layer_norm_param_grads<T, float>(p, allocator, stream);
    else layer_norm_param_grads<T, T>(p, allocator, stream);
  }
  const int threads = static_cast<int>(std::min<int64_t>((p.cols + 31) / 32 * 32, 512));
  const int64_t blocks = std::min<int64_t>(p.rows, 1 << 20);
  if (p.rms) layer_norm_backward_rows_kernel<T, true><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  else layer_norm_backward_rows_kernel<T, false><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("layer_norm_backward_rows_kernel");
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

void layer_norm_backward(const LayerNormBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.rms && p.dbeta != nullptr) throw std::invalid_argument("cuda layer_norm_backward: rms has no dbeta");
  if (p.rows <= 0 || p.cols <= 0) return;
  check_column_grid("layer_norm_backward", p.cols);
  switch (p.dtype) {
    case DType::f32: return launch_layer_norm_backward<float>(p, allocator, stream);
    case DType::f16: return launch_layer_norm_backward<__half>(p, allocator, stream);
    case DType::bf16: return launch_layer_norm_backward<__nv_bfloat16>(p, allocator, stream);
    default: throw_unsupported_dtype("layer_norm_backward", p.dtype);
  }
}

TFORMER_CUDA_OP(layer_norm);
TFORMER_CUDA_OP(layer_norm_backward);

}  // namespace tformer::cuda
