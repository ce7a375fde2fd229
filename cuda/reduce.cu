// Reductions of training, all deterministic (no float atomics: the order of additions
// depends only on the sizes):
//   sum_rows: out[c] += sum over rows of x[r, c] (bias gradients; column_sums.cuh);
//   sum_squares: sum of x^2 in double (gradient-norm clipping).
// (layer_norm_backward's reductions are with its forward, in layer_norm.cu.)
#include <algorithm>
#include <cstdint>

#include "column_sums.cuh"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "launch_util.h"
#include "ops.h"
#include "tformer/ops/reduce.h"
#include "reduce.cuh"

namespace tformer::cuda {

namespace {

constexpr int kSquaresThreads = 256;
constexpr int64_t kSquaresChunk = int64_t(1) << 16;  // elements per sum_squares block

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

TFORMER_CUDA_OP(sum_rows);
TFORMER_CUDA_OP(sum_squares);

}  // namespace tformer::cuda
