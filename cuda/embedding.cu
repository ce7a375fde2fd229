// out[r, :] = table[ids[r], :] * scale + positions[position_ids[r], :]
// One block per output row (grid-stride over rows); ids were range-checked on the host.
#include <algorithm>
#include <stdexcept>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "ops.h"

namespace tformer::cuda {

// ---------------------------------------------------------------- kernels

template <typename T>
__global__ void embedding_kernel(const EmbeddingParams p) {
  const T* table = static_cast<const T*>(p.table);
  const T* positions = static_cast<const T*>(p.positions);
  T* out = static_cast<T*>(p.out);
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const T* token = table + int64_t(p.ids[row]) * p.dim;
    const T* position = positions != nullptr ? positions + int64_t(p.position_ids[row]) * p.dim : nullptr;
    T* dst = out + row * p.dim;
    for (int64_t c = threadIdx.x; c < p.dim; c += blockDim.x) {
      float v = to_float(token[c]) * p.scale;
      if (position != nullptr) v += to_float(position[c]);
      dst[c] = from_float<T>(v);
    }
  }
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename T>
void launch_embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.dim == 0) return;
  const int threads = static_cast<int>(std::min<int64_t>((p.dim + 31) / 32 * 32, 256));
  const int64_t blocks = std::min<int64_t>(p.rows, 1 << 20);
  embedding_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("embedding_kernel");
}

}  // namespace

void embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (p.positions != nullptr && p.position_ids == nullptr)
    throw std::invalid_argument("cuda embedding: positions given without position_ids");
  switch (p.dtype) {
    case DType::f32: return launch_embedding<float>(p, stream);
    case DType::f16: return launch_embedding<__half>(p, stream);
    case DType::bf16: return launch_embedding<__nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("embedding", p.dtype);
  }
}

}  // namespace tformer::cuda
