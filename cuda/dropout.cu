// Dropout on the GPU, one thread per element (grid-stride), fp32 math: inverted dropout
// whose mask comes from the counter RNG shared with the CPU (cpp/include/tformer/random.h),
// so a (seed, offset) gives the same mask on both devices. Each element is read and
// written by the thread that owns it, so out may alias x. The backward is dropout itself
// (same seed and offset, on the gradient).
#include <algorithm>
#include <stdexcept>
#include <string>

#include "tformer/random.h"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "grid_stride.h"
#include "ops.h"
#include "tformer/ops/dropout.h"

namespace tformer::cuda {

namespace {

constexpr int kThreads = 256;

}  // namespace

// ---------------------------------------------------------------- kernel

// keep(i): dropout_draw(key, offset + i) >= p; kept values times scale = 1 / (1 - p),
// computed on the host as the CPU kernel does (0 when p = 1).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    dropout_kernel(const DropoutParams p, uint64_t key, float scale) {
  T* out = static_cast<T*>(p.out);
  const T* x = static_cast<const T*>(p.x);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.n; i += int64_t(gridDim.x) * blockDim.x) {
    const float u = rng::dropout_draw(key, p.offset + static_cast<uint64_t>(i));
    out[i] = u >= p.p ? from_float<T>(to_float(x[i]) * scale) : from_float<T>(0.0f);
  }
}

// ---------------------------------------------------------------- launcher

namespace {

template <typename T>
void launch_dropout(const DropoutParams& p, cudaStream_t stream) {
  const float scale = p.p < 1.0f ? 1.0f / (1.0f - p.p) : 0.0f;  // as the CPU kernel
  dropout_kernel<T><<<grid_stride_blocks(p.n, kThreads), kThreads, 0, stream>>>(p, rng::dropout_key(p.seed), scale);
  TFORMER_CUDA_CHECK_LAUNCH("dropout_kernel");
}

}  // namespace

void dropout(const DropoutParams& p, cudaStream_t stream) {
  if (!dtype_is_float(p.dtype)) throw_unsupported_dtype("dropout", p.dtype);
  if (!(p.p >= 0.0f && p.p <= 1.0f))
    throw std::invalid_argument("cuda dropout: p must be in [0, 1], got " + std::to_string(p.p));
  if (p.n <= 0) return;
  if (p.p == 0.0f) {  // the identity
    if (p.out != p.x)
      TFORMER_CUDA_CHECK(cudaMemcpyAsync(p.out, p.x, static_cast<size_t>(p.n) * dtype_size(p.dtype),
                                         cudaMemcpyDeviceToDevice, stream));
    return;
  }
  switch (p.dtype) {
    case DType::f32: return launch_dropout<float>(p, stream);
    case DType::f16: return launch_dropout<__half>(p, stream);
    case DType::bf16: return launch_dropout<__nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("dropout", p.dtype);
  }
}

TFORMER_CUDA_OP(dropout);

}  // namespace tformer::cuda
