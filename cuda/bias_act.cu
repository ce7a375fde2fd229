// bias_act, forward and backward, elementwise in fp32 (one thread per element):
//   forward:  out[r, c] = act(x[r, c] + bias[c]) + residual[r, c];
//   backward: dz = dy * act'(z), z the saved pre-activation (x + bias).
// Each element is read and written by one thread, so out may alias x or residual, and
// dz may alias dy.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "activation.cuh"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "grid_stride.h"
#include "ops.h"
#include "tformer/ops/bias_act.h"

namespace tformer::cuda {

namespace {

constexpr int kBackwardThreads = 256;

}  // namespace

// ---------------------------------------------------------------- kernels

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

template <typename T, Activation A>
__global__ void __launch_bounds__(kBackwardThreads) bias_act_backward_kernel(const BiasActBackwardParams p) {
  T* dz = static_cast<T*>(p.dz);
  const T* dy = static_cast<const T*>(p.dy);
  const T* z = static_cast<const T*>(p.z);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.n; i += int64_t(gridDim.x) * blockDim.x)
    dz[i] = from_float<T>(to_float(dy[i]) * activation_grad<A>(to_float(z[i])));
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

template <typename T, Activation A>
void launch_bias_act_backward(const BiasActBackwardParams& p, cudaStream_t stream) {
  bias_act_backward_kernel<T, A><<<grid_stride_blocks(p.n, kBackwardThreads), kBackwardThreads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("bias_act_backward_kernel");
}

template <typename T>
void launch_bias_act_backward(const BiasActBackwardParams& p, cudaStream_t stream) {
  switch (p.act) {
    case Activation::none: return launch_bias_act_backward<T, Activation::none>(p, stream);
    case Activation::relu: return launch_bias_act_backward<T, Activation::relu>(p, stream);
    case Activation::gelu: return launch_bias_act_backward<T, Activation::gelu>(p, stream);
    case Activation::gelu_tanh: return launch_bias_act_backward<T, Activation::gelu_tanh>(p, stream);
    case Activation::silu: return launch_bias_act_backward<T, Activation::silu>(p, stream);
  }
  throw std::invalid_argument("cuda bias_act_backward: unknown activation " + std::to_string(static_cast<int>(p.act)));
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

void bias_act_backward(const BiasActBackwardParams& p, cudaStream_t stream) {
  if (p.n <= 0) return;
  switch (p.dtype) {
    case DType::f32: return launch_bias_act_backward<float>(p, stream);
    case DType::f16: return launch_bias_act_backward<__half>(p, stream);
    case DType::bf16: return launch_bias_act_backward<__nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("bias_act_backward", p.dtype);
  }
}

TFORMER_CUDA_OP(bias_act);
TFORMER_CUDA_OP(bias_act_backward);

}  // namespace tformer::cuda
