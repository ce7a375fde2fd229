// Element-wise training kernels, one thread per element (grid-stride), fp32 math
// (bias_act's backward is with its forward, in bias_act.cu):
//   dropout: inverted dropout whose mask comes from the counter RNG shared with the CPU
//     (cpp/include/tformer/random.h), so a (seed, offset) gives the same mask on both devices;
//   adamw: one torch.optim.AdamW step with the CPU kernel's factors and rounding order.
// Each element is read and written by the thread that owns it, so dropout's out may
// alias x.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "tformer/adamw_factors.h"
#include "tformer/random.h"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "ops.h"
#include "tformer/ops/dropout.h"
#include "tformer/ops/adamw.h"

namespace tformer::cuda {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 4));
}

}  // namespace

// ---------------------------------------------------------------- kernels

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

// The CPU kernel's expression order, with explicitly rounded operations: no FMA
// contraction, so the float results are those of the CPU's separate multiplies and adds.
// H: the type of the half-precision copy of the weights (mixed precision), or void: none.
template <typename H>
__global__ void __launch_bounds__(kThreads) adamw_kernel(const AdamWParams p, const AdamWFactors f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = __fmul_rn(p.grad[i], f.gs);
    const float param = p.param[i];
    const float w = f.decayed ? __fmul_rn(param, f.decay) : param;
    float m = p.m[i];
    // torch's lerp(m, g, w1): m + w1 (g - m) for |w1| < 0.5, else g - (g - m)(1 - w1).
    m = f.small_w1 ? __fadd_rn(m, __fmul_rn(f.w1, __fsub_rn(g, m))) : __fsub_rn(g, __fmul_rn(__fsub_rn(g, m), f.one_minus_w1));
    const float v = __fadd_rn(__fmul_rn(p.v[i], f.b2), __fmul_rn(__fmul_rn(f.w2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), f.bc2_sqrt), f.eps);
    const float updated = __fadd_rn(w, __fdiv_rn(__fmul_rn(-f.step_size, m), denom));
    p.param[i] = updated;
    if constexpr (!std::is_void_v<H>) static_cast<H*>(p.param_half)[i] = from_float<H>(updated);
    p.m[i] = m;
    p.v[i] = v;
  }
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename T>
void launch_dropout(const DropoutParams& p, cudaStream_t stream) {
  const float scale = p.p < 1.0f ? 1.0f / (1.0f - p.p) : 0.0f;  // as the CPU kernel
  dropout_kernel<T><<<grid_for(p.n), kThreads, 0, stream>>>(p, rng::dropout_key(p.seed), scale);
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

void adamw(const AdamWParams& p, cudaStream_t stream) {
  if (p.n <= 0) return;
  const AdamWFactors f = adamw_factors(p);
  if (p.param_half == nullptr) {
    adamw_kernel<void><<<grid_for(p.n), kThreads, 0, stream>>>(p, f);
  } else if (p.half_dtype == DType::bf16) {
    adamw_kernel<__nv_bfloat16><<<grid_for(p.n), kThreads, 0, stream>>>(p, f);
  } else if (p.half_dtype == DType::f16) {
    adamw_kernel<__half><<<grid_for(p.n), kThreads, 0, stream>>>(p, f);
  } else {
    throw_unsupported_dtype("adamw (param_half)", p.half_dtype);
  }
  TFORMER_CUDA_CHECK_LAUNCH("adamw_kernel");
}

TFORMER_CUDA_OP(dropout);
TFORMER_CUDA_OP(adamw);

}  // namespace tformer::cuda
