// Error checks for the CUDA backend. Every failure throws std::runtime_error naming
// the file, line, call and the CUDA / cuBLAS error; nothing here exits or aborts,
// since the library runs inside a user's process (a Python interpreter, a service).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace tformer::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

}  // namespace tformer::cuda

#define TFORMER_CUDA_CHECK(call)                                              \
  do {                                                                        \
    const cudaError_t tformer_err_ = (call);                                  \
    if (tformer_err_ != cudaSuccess)                                          \
      ::tformer::cuda::throw_cuda_error(tformer_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define TFORMER_CUBLAS_CHECK(call)                                                \
  do {                                                                            \
    const cublasStatus_t tformer_status_ = (call);                                \
    if (tformer_status_ != CUBLAS_STATUS_SUCCESS)                                 \
      ::tformer::cuda::throw_cublas_error(tformer_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports a bad configuration (grid, shared memory) at once.
#define TFORMER_CUDA_CHECK_LAUNCH(kernel_name)                                      \
  do {                                                                              \
    const cudaError_t tformer_err_ = cudaGetLastError();                            \
    if (tformer_err_ != cudaSuccess)                                                \
      ::tformer::cuda::throw_cuda_error(tformer_err_, "launch of " kernel_name, __FILE__, __LINE__); \
  } while (0)
