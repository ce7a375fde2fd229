// Builds the messages thrown by TFORMER_CUDA_CHECK and TFORMER_CUBLAS_CHECK.
#include "cuda_check.h"

#include <stdexcept>
#include <string>

namespace tformer::cuda {

void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line) {
  // Clear the runtime's last-error slot, so that a later launch check does not report
  // this (non-sticky) error again.
  cudaGetLastError();
  throw std::runtime_error(std::string("CUDA error at ") + file + ":" + std::to_string(line) +
                           ": " + call + " failed: " + cudaGetErrorName(error) + " (" +
                           cudaGetErrorString(error) + ")");
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLAS error at ") + file + ":" + std::to_string(line) +
                           ": " + call + " failed: " + cublasGetStatusName(status) + " (" +
                           cublasGetStatusString(status) + ")");
}

}  // namespace tformer::cuda
