// dst[i] = (dst dtype) src[i] between the float dtypes, through fp32: f16 and bf16
// widen to fp32 exactly, so every cast rounds once (to nearest even). The same dtype
// on both sides is a device copy.
#include <algorithm>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "ops.h"
#include "tformer/ops/cast.h"

namespace tformer::cuda {

// ---------------------------------------------------------------- kernels

template <typename S, typename D>
__global__ void cast_kernel(const CastParams p) {
  const S* src = static_cast<const S*>(p.src);
  D* dst = static_cast<D*>(p.dst);
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < p.n;
       idx += int64_t(gridDim.x) * blockDim.x)
    dst[idx] = from_float<D>(to_float(src[idx]));
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename S, typename D>
void launch_cast(const CastParams& p, cudaStream_t stream) {
  if (p.n == 0) return;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((p.n + threads - 1) / threads, 65535);
  cast_kernel<S, D><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("cast_kernel");
}

template <typename S>
void launch_cast_from(const CastParams& p, cudaStream_t stream) {
  switch (p.dst_dtype) {
    case DType::f32: return launch_cast<S, float>(p, stream);
    case DType::f16: return launch_cast<S, __half>(p, stream);
    case DType::bf16: return launch_cast<S, __nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("cast (to)", p.dst_dtype);
  }
}

}  // namespace

void cast(const CastParams& p, cudaStream_t stream) {
  if (!dtype_is_float(p.src_dtype)) throw_unsupported_dtype("cast (from)", p.src_dtype);
  if (!dtype_is_float(p.dst_dtype)) throw_unsupported_dtype("cast (to)", p.dst_dtype);
  if (p.src_dtype == p.dst_dtype) {
    if (p.n > 0 && p.dst != p.src)
      TFORMER_CUDA_CHECK(cudaMemcpyAsync(p.dst, p.src, p.n * dtype_size(p.src_dtype),
                                         cudaMemcpyDeviceToDevice, stream));
    return;
  }
  switch (p.src_dtype) {
    case DType::f32: return launch_cast_from<float>(p, stream);
    case DType::f16: return launch_cast_from<__half>(p, stream);
    case DType::bf16: return launch_cast_from<__nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("cast (from)", p.src_dtype);
  }
}

TFORMER_CUDA_OP(cast);

}  // namespace tformer::cuda
