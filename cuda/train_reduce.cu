// Reductions of training, all deterministic (no float atomics: the order of additions
// depends only on the sizes):
//   sum_rows: out[c] += sum over rows of x[r, c] (bias gradients);
//   layer_norm_backward: ds per row (one block per row, two block sums), and
//     dgamma += sum_r dout * xhat, dbeta += sum_r dout across rows;
//   sum_squares: sum of x^2 in double (gradient-norm clipping).
// Column sums run in two kernels: column_partials_kernel gives each fixed chunk of rows
// its own partial vector (a block = 32 columns x 8 row lanes, combined in lane order),
// then column_finish_kernel adds the chunks' partials in chunk order to the output.
#include <algorithm>
#include <cstdint>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "launch_util.h"
#include "ops.h"
#include "reduce.cuh"

namespace tformer::cuda {

namespace {

constexpr int kColTile = 32;      // columns per column_partials block (threadIdx.x)
constexpr int kRowLanes = 8;      // rows summed side by side per block (threadIdx.y)
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMinChunkRows = 32;
constexpr int kFinishThreads = 256;
constexpr int kSquaresThreads = 256;
constexpr int64_t kSquaresChunk = int64_t(1) << 16;  // elements per sum_squares block

// Rows per chunk: a function of the row count only, so results do not depend on the GPU.
int64_t chunk_rows(int64_t rows) {
  return std::max(kMinChunkRows, (rows + kMaxChunks - 1) / kMaxChunks);
}

}  // namespace

// ---------------------------------------------------------------- column sums

// The values summed down the columns: N per element.
template <typename T>
struct RowValues {
  static constexpr int N = 1;
  const T* x;
  int64_t cols;
  __device__ void operator()(int64_t r, int64_t c, float (&v)[N]) const { v[0] = to_float(x[r * cols + c]); }
};

// Layer norm's parameter gradients: dout * xhat (dgamma) and dout (dbeta).
template <typename T>
struct LayerNormParamValues {
  static constexpr int N = 2;
  const T* dout;
  const T* s;
  const float* mean;
  const float* rstd;
  int64_t cols;
  __device__ void operator()(int64_t r, int64_t c, float (&v)[N]) const {
    const float dy = to_float(dout[r * cols + c]);
    v[0] = dy * ((to_float(s[r * cols + c]) - mean[r]) * rstd[r]);
    v[1] = dy;
  }
};

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

// ---------------------------------------------------------------- layer norm rows

// ds = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * gamma, per row; one
// block per row (grid-stride). Each element of ds is written by the thread that read
// the same element of dout, so ds may alias dout.
template <typename T>
__global__ void layer_norm_backward_rows_kernel(const LayerNormBackwardParams p) {
  __shared__ float scratch[32];
  const T* dout = static_cast<const T*>(p.dout);
  const T* s = static_cast<const T*>(p.s);
  const T* gamma = static_cast<const T*>(p.gamma);
  T* ds = static_cast<T*>(p.ds);
  const float inv_cols = 1.0f / static_cast<float>(p.cols);
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const int64_t offset = row * p.cols;
    const float mean = p.mean[row], rstd = p.rstd[row];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float xhat = (to_float(s[offset + c]) - mean) * rstd;
      const float g = to_float(dout[offset + c]) * to_float(gamma[c]);
      sum_g += g;
      sum_gx += g * xhat;
    }
    const float mg = block_sum(sum_g, scratch) * inv_cols;
    const float mgx = block_sum(sum_gx, scratch) * inv_cols;
    for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
      const float xhat = (to_float(s[offset + c]) - mean) * rstd;
      float v = rstd * (to_float(dout[offset + c]) * to_float(gamma[c]) - mg - xhat * mgx);
      if (p.accumulate) v += to_float(ds[offset + c]);
      ds[offset + c] = from_float<T>(v);
    }
  }
}

// ---------------------------------------------------------------- sum of squares

__device__ __forceinline__ double warp_sum_double(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// A fixed tree over the block's threads: the same order on every run.
__device__ __forceinline__ double block_sum_double(double v) {
  __shared__ double warps[kSquaresThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum_double(v);
  if (lane == 0) warps[warp] = v;
  __syncthreads();
  double total = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kSquaresThreads / 32; ++w) total += warps[w];
  return total;  // meaningful in thread 0
}

// partial[block] = sum of x^2 over the block's chunk of kSquaresChunk elements.
template <typename T>
__global__ void __launch_bounds__(kSquaresThreads) sum_squares_kernel(const T* x, int64_t n, double* partial) {
  const int64_t i0 = int64_t(blockIdx.x) * kSquaresChunk;
  const int64_t i1 = min(n, i0 + kSquaresChunk);
  double acc = 0.0;
  for (int64_t i = i0 + threadIdx.x; i < i1; i += kSquaresThreads) {
    const double v = to_float(x[i]);
    acc += v * v;
  }
  const double total = block_sum_double(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// *result = the sum of partial[0 .. count): one block, each thread a strided share in
// order, then the block tree.
__global__ void __launch_bounds__(kSquaresThreads) sum_partials_kernel(const double* partial, int64_t count, double* result) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kSquaresThreads) acc += partial[i];
  const double total = block_sum_double(acc);
  if (threadIdx.x == 0) *result = total;
}

// ---------------------------------------------------------------- launchers

namespace {

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

void check_column_grid(const char* op, int64_t cols) {
  if ((cols + kColTile - 1) / kColTile > 0x7fffffff)
    throw std::invalid_argument(std::string("cuda ") + op + ": " + std::to_string(cols) + " columns are too many");
}

// G: the gradient's type, T or float (mixed precision: float32 gradients of half values).
template <typename T, typename G>
void launch_sum_rows(const SumRowsParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  RowValues<T> f{static_cast<const T*>(p.x), p.cols};
  column_sums<G>(f, p.rows, p.cols, static_cast<G*>(p.out), static_cast<G*>(nullptr), allocator, stream);
}

template <typename T>
void launch_sum_rows(const SumRowsParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.grad_f32) return launch_sum_rows<T, float>(p, allocator, stream);
  launch_sum_rows<T, T>(p, allocator, stream);
}

template <typename T, typename G>
void layer_norm_param_grads(const LayerNormBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  LayerNormParamValues<T> f{static_cast<const T*>(p.dout), static_cast<const T*>(p.s), p.mean, p.rstd, p.cols};
  column_sums<G>(f, p.rows, p.cols, static_cast<G*>(p.dgamma), static_cast<G*>(p.dbeta), allocator, stream);
}

template <typename T>
void launch_layer_norm_backward(const LayerNormBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  // The parameter gradients first: they read dout, which ds may alias.
  if (p.dgamma != nullptr || p.dbeta != nullptr) {
    if (p.grad_f32) layer_norm_param_grads<T, float>(p, allocator, stream);
    else layer_norm_param_grads<T, T>(p, allocator, stream);
  }
  const int threads = static_cast<int>(std::min<int64_t>((p.cols + 31) / 32 * 32, 512));
  const int64_t blocks = std::min<int64_t>(p.rows, 1 << 20);
  layer_norm_backward_rows_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("layer_norm_backward_rows_kernel");
}

template <typename T>
void launch_sum_squares(const SumSquaresParams& p, CachingAllocator& allocator, cudaStream_t stream,
                        double* host_result) {
  const int64_t blocks = (p.n + kSquaresChunk - 1) / kSquaresChunk;
  ScopedBlock partial(allocator, static_cast<size_t>(blocks + 1) * sizeof(double));
  double* result = partial.as<double>() + blocks;
  sum_squares_kernel<T><<<static_cast<unsigned>(blocks), kSquaresThreads, 0, stream>>>(
      static_cast<const T*>(p.x), p.n, partial.as<double>());
  TFORMER_CUDA_CHECK_LAUNCH("sum_squares_kernel");
  sum_partials_kernel<<<1, kSquaresThreads, 0, stream>>>(partial.as<double>(), blocks, result);
  TFORMER_CUDA_CHECK_LAUNCH("sum_partials_kernel");
  TFORMER_CUDA_CHECK(cudaMemcpyAsync(host_result, result, sizeof(double), cudaMemcpyDeviceToHost, stream));
}

}  // namespace

void sum_rows(const SumRowsParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.rows <= 0 || p.cols <= 0) return;
  check_column_grid("sum_rows", p.cols);
  switch (p.dtype) {
    case DType::f32: return launch_sum_rows<float, float>(p, allocator, stream);
    case DType::f16: return launch_sum_rows<__half>(p, allocator, stream);
    case DType::bf16: return launch_sum_rows<__nv_bfloat16>(p, allocator, stream);
    default: throw_unsupported_dtype("sum_rows", p.dtype);
  }
}

void layer_norm_backward(const LayerNormBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.rows <= 0 || p.cols <= 0) return;
  check_column_grid("layer_norm_backward", p.cols);
  switch (p.dtype) {
    case DType::f32: return launch_layer_norm_backward<float>(p, allocator, stream);
    case DType::f16: return launch_layer_norm_backward<__half>(p, allocator, stream);
    case DType::bf16: return launch_layer_norm_backward<__nv_bfloat16>(p, allocator, stream);
    default: throw_unsupported_dtype("layer_norm_backward", p.dtype);
  }
}

void sum_squares(const SumSquaresParams& p, CachingAllocator& allocator, cudaStream_t stream, double* host_result) {
  *host_result = 0.0;
  if (p.n <= 0) return;
  if ((p.n + kSquaresChunk - 1) / kSquaresChunk > 0x7fffffff)
    throw std::invalid_argument("cuda sum_squares: " + std::to_string(p.n) + " elements are too many");
  switch (p.dtype) {
    case DType::f32: return launch_sum_squares<float>(p, allocator, stream, host_result);
    case DType::f16: return launch_sum_squares<__half>(p, allocator, stream, host_result);
    case DType::bf16: return launch_sum_squares<__nv_bfloat16>(p, allocator, stream, host_result);
    default: throw_unsupported_dtype("sum_squares", p.dtype);
  }
}

}  // namespace tformer::cuda
