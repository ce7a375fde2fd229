// Backward of the embedding lookup: dtable[ids[r], :] += scale * dout[r, :] and
// dpositions[position_ids[r], :] += dout[r, :], skipping rows whose id is skip_id
// (dpositions is used only with position_ids, as on the CPU).
// One block per dout row (grid-stride), atomic adds into the tables: rows that share an
// id add into the same table row. fp32 atomics make the order of those additions, and so
// the last bits of a shared row's sum, vary from run to run (the CPU kernel's are fixed);
// f16 / bf16 tables use the hardware's half-precision atomics (sm_70 / sm_80 and later).
#include <algorithm>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "ops.h"

namespace tformer::cuda {

__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(__half* p, float v) { atomicAdd(p, __float2half_rn(v)); }
__device__ __forceinline__ void atomic_add(__nv_bfloat16* p, float v) { atomicAdd(p, __float2bfloat16_rn(v)); }

template <typename T>
__global__ void embedding_backward_kernel(const EmbeddingBackwardParams p) {
  T* dtable = static_cast<T*>(p.dtable);
  T* dpositions = p.position_ids != nullptr ? static_cast<T*>(p.dpositions) : nullptr;
  const T* dout = static_cast<const T*>(p.dout);
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int32_t id = p.ids[row];
    if (id == p.skip_id) continue;
    const T* g = dout + row * p.dim;
    T* t = dtable != nullptr ? dtable + int64_t(id) * p.dim : nullptr;
    T* pos = dpositions != nullptr ? dpositions + int64_t(p.position_ids[row]) * p.dim : nullptr;
    for (int64_t c = threadIdx.x; c < p.dim; c += blockDim.x) {
      const float v = to_float(g[c]);
      if (t != nullptr) atomic_add(t + c, v * p.scale);
      if (pos != nullptr) atomic_add(pos + c, v);
    }
  }
}

namespace {

template <typename T>
void launch_embedding_backward(const EmbeddingBackwardParams& p, cudaStream_t stream) {
  const int threads = static_cast<int>(std::min<int64_t>((p.dim + 31) / 32 * 32, 256));
  const int64_t blocks = std::min<int64_t>(p.rows, 1 << 20);
  embedding_backward_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("embedding_backward_kernel");
}

}  // namespace

void embedding_backward(const EmbeddingBackwardParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.dim <= 0 || (p.dtable == nullptr && p.dpositions == nullptr)) return;
  switch (p.dtype) {
    case DType::f32: return launch_embedding_backward<float>(p, stream);
    case DType::f16: return launch_embedding_backward<__half>(p, stream);
    case DType::bf16: return launch_embedding_backward<__nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("embedding_backward", p.dtype);
  }
}

}  // namespace tformer::cuda
