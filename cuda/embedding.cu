// The embedding lookup, forward and backward.
// Forward: out[r, :] = table[ids[r], :] * scale + positions[position_ids[r], :]
// One block per output row (grid-stride over rows); ids were range-checked on the host.
//
// Backward: dtable[ids[r], :] += scale * dout[r, :] and
// dpositions[position_ids[r], :] += dout[r, :], skipping rows whose token id is skip_id
// (dpositions is used only with position_ids, as on the CPU).
//
// Deterministic, without atomics: the rows are sorted by the id they add into (CUB's
// radix sort, stable, so equal ids keep their row order), then each run of equal ids is
// summed by one block, column by column, starting from the table's value and adding the
// rows in row order: the CPU kernel's order of additions. A run of the skip id (table) or
// of skipped rows only (positions) leaves its table row untouched and unread, since a
// skipped row's ids were never range-checked.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "launch_util.h"
#include "ops.h"
#include "tformer/ops/embedding.h"

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

// ================================================================ backward

namespace {

constexpr int kIotaThreads = 256;

}  // namespace

__global__ void __launch_bounds__(kIotaThreads) iota_kernel(int32_t* out, int32_t n) {
  for (int32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) out[i] = i;
}

// table[key, :] += scale * sum of dout[rows[s], :] over the run s of keys[s] == key, in
// order, skipping rows whose token id is skip_id. One block per run start (grid-stride
// over sorted positions; the others return at once), threads over the columns.
template <typename T, typename G>
__global__ void embedding_runs_kernel(const T* dout, int64_t dim, const int32_t* keys, const int32_t* rows, int32_t n,
                                      const int32_t* ids, int32_t skip_id, float scale, G* table) {
  for (int32_t k = blockIdx.x; k < n; k += gridDim.x) {
    const int32_t key = keys[k];
    if (k > 0 && keys[k - 1] == key) continue;  // block-uniform: not the start of a run
    G* dst = table + int64_t(key) * dim;
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
      float acc = 0.0f;
      bool any = false;
      for (int32_t s = k; s < n && keys[s] == key; ++s) {
        const int32_t r = rows[s];
        if (ids[r] == skip_id) continue;
        if (!any) acc = to_float(dst[c]), any = true;  // read only a row that gets a gradient
        acc += to_float(dout[int64_t(r) * dim + c]) * scale;
      }
      if (any) dst[c] = from_float<G>(acc);
    }
  }
}

namespace {

// T: dout's type; G: the tables' (T, or float for mixed precision's float32 gradients).
template <typename T, typename G>
void launch_runs(const EmbeddingBackwardParams& p, const int32_t* keys_in, G* table, float scale, int32_t* keys,
                 int32_t* rows, const int32_t* iota, void* temp, size_t temp_bytes, cudaStream_t stream) {
  const int32_t n = static_cast<int32_t>(p.rows);
  TFORMER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys, iota, rows, n, 0, 32, stream));
  const int threads = static_cast<int>(std::min<int64_t>((p.dim + 31) / 32 * 32, 256));
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(n, 1 << 20));
  embedding_runs_kernel<T, G><<<blocks, threads, 0, stream>>>(static_cast<const T*>(p.dout), p.dim, keys, rows, n, p.ids,
                                                           p.skip_id, scale, table);
  TFORMER_CUDA_CHECK_LAUNCH("embedding_runs_kernel");
}

template <typename T, typename G>
void launch_embedding_backward(const EmbeddingBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  const int32_t n = static_cast<int32_t>(p.rows);
  size_t temp_bytes = 0;
  TFORMER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, static_cast<const int32_t*>(nullptr),
                                                     static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                     static_cast<int32_t*>(nullptr), n, 0, 32, stream));
  // iota, sorted keys, sorted rows (int32 each), then the sort's temporary.
  const size_t ints = (3 * size_t(n) + 63) / 64 * 64;  // 256-byte aligned temporary after them
  ScopedBlock block(allocator, ints * sizeof(int32_t) + temp_bytes);
  int32_t* iota = block.as<int32_t>();
  int32_t* keys = iota + n;
  int32_t* rows = keys + n;
  void* temp = iota + ints;
  iota_kernel<<<static_cast<unsigned>(std::min<int64_t>((n + kIotaThreads - 1) / kIotaThreads, 4096)), kIotaThreads, 0,
                stream>>>(iota, n);
  TFORMER_CUDA_CHECK_LAUNCH("iota_kernel");
  if (p.dtable != nullptr)
    launch_runs<T, G>(p, p.ids, static_cast<G*>(p.dtable), p.scale, keys, rows, iota, temp, temp_bytes, stream);
  if (p.dpositions != nullptr && p.position_ids != nullptr)
    launch_runs<T, G>(p, p.position_ids, static_cast<G*>(p.dpositions), 1.0f, keys, rows, iota, temp, temp_bytes,
                      stream);
}

template <typename T>
void launch_embedding_backward(const EmbeddingBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.grad_f32) return launch_embedding_backward<T, float>(p, allocator, stream);
  launch_embedding_backward<T, T>(p, allocator, stream);
}

}  // namespace

void embedding_backward(const EmbeddingBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.rows <= 0 || p.dim <= 0 || (p.dtable == nullptr && (p.dpositions == nullptr || p.position_ids == nullptr)))
    return;
  if (p.rows > INT32_MAX)
    throw std::invalid_argument("cuda embedding_backward: " + std::to_string(p.rows) + " rows are too many (at most 2^31 - 1)");
  switch (p.dtype) {
    case DType::f32: return launch_embedding_backward<float, float>(p, allocator, stream);
    case DType::f16: return launch_embedding_backward<__half>(p, allocator, stream);
    case DType::bf16: return launch_embedding_backward<__nv_bfloat16>(p, allocator, stream);
    default: throw_unsupported_dtype("embedding_backward", p.dtype);
  }
}

TFORMER_CUDA_OP(embedding);
TFORMER_CUDA_OP(embedding_backward);

}  // namespace tformer::cuda
