// Deterministic column sums (no float atomics: the order of additions depends only on
// the sizes), shared by sum_rows (reduce.cu) and layer_norm_backward's parameter
// gradients (layer_norm.cu). Two kernels: column_partials_kernel gives each fixed chunk
// of rows its own partial vector (a block = 32 columns x 8 row lanes, combined in lane
// order), then column_finish_kernel adds the chunks' partials in chunk order to the
// output. F supplies N values per element: `void operator()(int64_t r, int64_t c,
// float (&v)[N]) const` on the device.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "launch_util.h"
#include "ops.h"

namespace tformer::cuda {

constexpr int kColTile = 32;      // columns per column_partials block (threadIdx.x)
constexpr int kRowLanes = 8;      // rows summed side by side per block (threadIdx.y)
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMinChunkRows = 32;
constexpr int kFinishThreads = 256;

// Rows per chunk: a function of the row count only, so results do not depend on the GPU.
inline int64_t chunk_rows(int64_t rows) {
  return std::max(kMinChunkRows, (rows + kMaxChunks - 1) / kMaxChunks);
}

// partial[(chunk * N + o) * cols + c] = sum over the chunk's rows of value o at column c.
// Grid: (column tiles, chunks); block (kColTile, kRowLanes).
template <typename F>
__global__ void __launch_bounds__(kColTile* kRowLanes)
    column_partials_kernel(const F f, int64_t rows, int64_t cols, int64_t rows_per_chunk, float* partial) {
  __shared__ float lanes[F::N][kRowLanes][kColTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = int64_t(blockIdx.x) * kColTile + tx;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  float acc[F::N];
#pragma unroll
  for (int o = 0; o < F::N; ++o) acc[o] = 0.0f;
  if (c < cols) {
    for (int64_t r = r0 + ty; r < r1; r += kRowLanes) {
      float v[F::N];
      f(r, c, v);
#pragma unroll
      for (int o = 0; o < F::N; ++o) acc[o] += v[o];
    }
  }
#pragma unroll
  for (int o = 0; o < F::N; ++o) lanes[o][ty][tx] = acc[o];
  __syncthreads();
  if (ty != 0 || c >= cols) return;
#pragma unroll
  for (int o = 0; o < F::N; ++o) {
    float sum = 0.0f;
#pragma unroll
    for (int y = 0; y < kRowLanes; ++y) sum += lanes[o][y][tx];
    partial[(int64_t(blockIdx.y) * F::N + o) * cols + c] = sum;
  }
}

// out_o[c] += sum over chunks (in order) of partial[(chunk * N + o) * cols + c]; a null
// out_o is skipped. Up to two outputs (dgamma, dbeta).
template <typename T, int N>
__global__ void __launch_bounds__(kFinishThreads)
    column_finish_kernel(const float* partial, int64_t chunks, int64_t cols, T* out0, T* out1) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += int64_t(gridDim.x) * blockDim.x) {
#pragma unroll
    for (int o = 0; o < N; ++o) {
      T* out = o == 0 ? out0 : out1;
      if (out == nullptr) continue;
      float sum = 0.0f;
      for (int64_t ch = 0; ch < chunks; ++ch) sum += partial[(ch * N + o) * cols + c];
      out[c] = from_float<T>(to_float(out[c]) + sum);
    }
  }
}

// Column sums of f's N values into out0 (and out1): partials per chunk, then the finish.
template <typename T, typename F>
void column_sums(const F& f, int64_t rows, int64_t cols, T* out0, T* out1, CachingAllocator& allocator,
                 cudaStream_t stream) {
  const int64_t per_chunk = chunk_rows(rows);
  const int64_t chunks = (rows + per_chunk - 1) / per_chunk;
  ScopedBlock partial(allocator, static_cast<size_t>(chunks * F::N * cols) * sizeof(float));
  const dim3 grid(static_cast<unsigned>((cols + kColTile - 1) / kColTile), static_cast<unsigned>(chunks));
  column_partials_kernel<F><<<grid, dim3(kColTile, kRowLanes), 0, stream>>>(f, rows, cols, per_chunk,
                                                                            partial.as<float>());
  TFORMER_CUDA_CHECK_LAUNCH("column_partials_kernel");
  const int64_t blocks = std::min<int64_t>((cols + kFinishThreads - 1) / kFinishThreads, 65535);
  column_finish_kernel<T, F::N><<<static_cast<unsigned>(blocks), kFinishThreads, 0, stream>>>(
      partial.as<float>(), chunks, cols, out0, out1);
  TFORMER_CUDA_CHECK_LAUNCH("column_finish_kernel");
}

inline void check_column_grid(const char* op, int64_t cols) {
  if ((cols + kColTile - 1) / kColTile > 0x7fffffff)
    throw std::invalid_argument(std::string("cuda ") + op + ": " + std::to_string(cols) + " columns are too many");
}

}  // namespace tformer::cuda
