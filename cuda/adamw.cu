// The AdamW step on the GPU, one thread per element (grid-stride): one torch.optim.AdamW
// step with the CPU kernel's factors and rounding order (tformer/adamw_factors.h).
#include <algorithm>
#include <type_traits>

#include "tformer/adamw_factors.h"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "grid_stride.h"
#include "ops.h"
#include "tformer/ops/adamw.h"

namespace tformer::cuda {

namespace {

constexpr int kThreads = 256;

}  // namespace

// ---------------------------------------------------------------- kernel

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

// ---------------------------------------------------------------- launcher

void adamw(const AdamWParams& p, cudaStream_t stream) {
  if (p.n <= 0) return;
  const AdamWFactors f = adamw_factors(p);
  if (p.param_half == nullptr) {
    adamw_kernel<void><<<grid_stride_blocks(p.n, kThreads), kThreads, 0, stream>>>(p, f);
  } else if (p.half_dtype == DType::bf16) {
    adamw_kernel<__nv_bfloat16><<<grid_stride_blocks(p.n, kThreads), kThreads, 0, stream>>>(p, f);
  } else if (p.half_dtype == DType::f16) {
    adamw_kernel<__half><<<grid_stride_blocks(p.n, kThreads), kThreads, 0, stream>>>(p, f);
  } else {
    throw_unsupported_dtype("adamw (param_half)", p.half_dtype);
  }
  TFORMER_CUDA_CHECK_LAUNCH("adamw_kernel");
}

TFORMER_CUDA_OP(adamw);

}  // namespace tformer::cuda
