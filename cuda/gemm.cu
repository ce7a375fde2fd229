// Matrix products through cuBLAS. GemmParams is row-major; cuBLAS is column-major.
// A row-major (r, c) matrix with row stride ld is the column-major (c, r) matrix with
// leading dimension ld, so row-major C = op(A) op(B) is column-major
// C^T = op(B)^T op(A)^T: call cuBLAS with B first, A second, and m, n swapped.
#include <cublas_v2.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "ops.h"
#include "tformer/ops/gemm.h"

namespace tformer::cuda {

// ---------------------------------------------------------------- kernels

// C = beta * C over an (m, n) row-major block: the whole product when k == 0.
template <typename T>
__global__ void scale_rows_kernel(const GemmParams p) {
  T* c = static_cast<T*>(p.c);
  const int64_t total = p.m * p.n;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    T* e = c + (idx / p.n) * p.ldc + idx % p.n;
    *e = from_float<T>(p.beta * to_float(*e));
  }
}

// ---------------------------------------------------------------- launchers

namespace {

cudaDataType_t gemm_data_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: throw_unsupported_dtype("gemm", dtype);
  }
}

// cuBLAS checks ld >= rows of the column-major view even where the stride is never
// used (a matrix of one row), so such strides are raised to the minimum.
int64_t leading_dim(int64_t ld, int64_t rows, int64_t cols) {
  return rows <= 1 ? std::max<int64_t>({ld, cols, 1}) : ld;
}

template <typename T>
void scale_rows(const GemmParams& p, cudaStream_t stream) {
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((p.m * p.n + threads - 1) / threads, 65535);
  scale_rows_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("scale_rows_kernel");
}

DType c_dtype(const GemmParams& p) { return p.c_f32 ? DType::f32 : p.dtype; }

// k == 0: op(A) op(B) is empty, C = beta * C (C is not read when beta == 0).
void gemm_empty_product(const GemmParams& p, cudaStream_t stream) {
  const size_t elem = dtype_size(c_dtype(p));
  if (p.beta == 0.0f) {
    const int64_t ldc = leading_dim(p.ldc, p.m, p.n);
    TFORMER_CUDA_CHECK(cudaMemset2DAsync(p.c, ldc * elem, 0, p.n * elem, p.m, stream));
    return;
  }
  if (p.beta == 1.0f) return;
  switch (c_dtype(p)) {
    case DType::f32: return scale_rows<float>(p, stream);
    case DType::f16: return scale_rows<__half>(p, stream);
    case DType::bf16: return scale_rows<__nv_bfloat16>(p, stream);
    default: throw_unsupported_dtype("gemm", p.dtype);
  }
}

}  // namespace

void gemm(const GemmParams& p, cublasHandle_t handle, cudaStream_t stream) {
  const cudaDataType_t type = gemm_data_type(p.dtype);
  // Mixed precision: f16/bf16 A and B, float32 C (cuBLAS's CUDA_R_16F/16BF x CUDA_R_32F
  // combination with 32F compute), the parameter gradients' dW += dY^T X.
  const cudaDataType_t c_type = gemm_data_type(c_dtype(p));
  if (p.m == 0 || p.n == 0) return;
  if (p.k == 0) return gemm_empty_product(p, stream);

  // Stored shapes (rows, cols) of A and B in row-major terms.
  const int64_t a_rows = p.trans_a ? p.k : p.m, a_cols = p.trans_a ? p.m : p.k;
  const int64_t b_rows = p.trans_b ? p.n : p.k, b_cols = p.trans_b ? p.k : p.n;
  const int64_t lda = leading_dim(p.lda, a_rows, a_cols);
  const int64_t ldb = leading_dim(p.ldb, b_rows, b_cols);
  const int64_t ldc = leading_dim(p.ldc, p.m, p.n);
  const cublasOperation_t op_a = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;

  // fp32 compute for every dtype; in the default math mode fp32 stays fp32 (no TF32).
  TFORMER_CUBLAS_CHECK(cublasSetStream(handle, stream));
  TFORMER_CUBLAS_CHECK(cublasGemmEx_64(handle, op_b, op_a, p.n, p.m, p.k, &p.alpha,
                                       p.b, type, ldb, p.a, type, lda, &p.beta,
                                       p.c, c_type, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

TFORMER_CUDA_OP(gemm);

}  // namespace tformer::cuda
