// Stands in for <cublas_v2.h> when cuda/gemm.cu is compiled for the emulator: the
// handful of cuBLAS types and the two calls gemm.cu makes, so that gemm.cu's own code
// (row-major -> column-major swap, leading-dimension fix-ups, the k == 0 path) runs
// unchanged. cublasGemmEx_64 is a host product with cuBLAS's column-major contract and
// its argument checks (an ld below the rows of the stored matrix is
// CUBLAS_STATUS_INVALID_VALUE), fp32 accumulation, C not read when beta == 0.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <driver_types.h>
#include <library_types.h>

#include <cstdint>
#include <stdexcept>
#include <string>

typedef struct cublasContext* cublasHandle_t;  // as cublas_api.h (and cuda/ops.h) declare it
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasGemmEx_64(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int64_t m,
                               int64_t n, int64_t k, const void* alpha, const void* A, cudaDataType_t Atype,
                               int64_t lda, const void* B, cudaDataType_t Btype, int64_t ldb, const void* beta, void* C,
                               cudaDataType_t Ctype, int64_t ldc, cublasComputeType_t computeType,
                               cublasGemmAlgo_t algo);  // emu_gemm.cpp

#define TFORMER_CUBLAS_CHECK(call)                                                                         \
  do {                                                                                                     \
    const cublasStatus_t emu_status_ = (call);                                                             \
    if (emu_status_ != CUBLAS_STATUS_SUCCESS)                                                              \
      throw std::runtime_error(std::string("emu: " #call " failed: cuBLAS status ") +                    \
                               std::to_string(static_cast<int>(emu_status_)));                           \
  } while (0)
