// out[r, c] = act(x[r, c] + bias[c]) + residual[r, c], elementwise in fp32.
// Each element is read and written by one thread, so out may alias x or residual.
#include <algorithm>
#include <cmath>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "ops.h"

namespace tformer::cuda {

// ---------------------------------------------------------------- kernels

template <Activation A>
__device__ __forceinline__ float activate(float x) {
  if constexpr (A == Activation::relu) {
    return fmaxf(x, 0.0f);
  } else if constexpr (A == Activation::gelu) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));  // x * Phi(x)
  } else if constexpr (A == Activation::gelu_tanh) {
    // Hendrycks & Gimpel (2016), the tanh approximation used by GPT-2 and BERT.
    const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(inner));
  } else if constexpr (A == Activation::silu) {
    return x / (1.0f + expf(-x));
  } else {
    return x;
  }
}

template <typename T, Activation A>
__global__ void bias_act_kernel(const BiasActParams p) {
  T* out = static_cast<T*>(p.out);
  const T* x = static_cast<const T*>(p.x);
  const T* bias = static_cast<const T*>(p.bias);
  const T* residual = static_cast<const T*>(p.residual);
  const int64_t total = p.rows * p.cols;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    float v = to_float(x[idx]);
    if (bias != nullptr) v += to_float(bias[idx % p.cols]);
    v = activate<A>(v);
    if (residual != nullptr) v += to_float(residual[idx]);
    out[idx] = from_float<T>(v);
  }
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename T, Activation A>
void launch_bias_act(const BiasActParams& p, cudaStream_t stream) {
  const int64_t total = p.rows * p.cols;
  if (total == 0) return;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 65535);
  bias_act_kernel<T, A><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("bias_act_kernel");
}

template <typename T>
void launch_bias_act(const BiasActParams& p, cudaStream_t stream) {
  switch (p.act) {
    case Activation::none: return launch_bias_act<T, Activation::none>(p, stream);
    case Activation::relu: return launch_bias_act<T, Activation::relu>(p, stream);
    case Activation::gelu: return launch_bias_act<T, Activation::gelu>(p, stream);
    case Activation::gelu_tanh: return launch_bias_act<T, Activation::gelu_tanh>(p, stream);
    case Activation::silu: return launch_bias_act<T, Activation::silu>(p, stream);
  }
  throw std::invalid_argument("cuda bias_act: unknown activation " +
                              std::to_string(static_cast<int>(p.act)));
}

}  // namespace

void bias_act(const BiasActParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::f32: return launch_bias_act<float>(p, stream);
    case DType::f16: return launch_bias_act<__half>(p, stream);
    case DType::bf16: return launch_bias_act<__nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("bias_act", p.dtype);
  }
}

}  // namespace tformer::cuda
