// DeviceState: see device_state.h.
#include "device_state.h"

#include "cuda_check.h"

namespace tformer::cuda {

cudaStream_t DeviceState::stream() {
  if (stream_ == nullptr) {
    // Non-blocking: no implicit ordering with the legacy default stream, which other
    // libraries in the process (PyTorch, CuPy) may be using.
    TFORMER_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  return stream_;
}

cublasHandle_t DeviceState::cublas() {
  if (cublas_ == nullptr) {
    cudaStream_t s = stream();
    cublasHandle_t handle = nullptr;
    TFORMER_CUBLAS_CHECK(cublasCreate(&handle));
    // The default math mode keeps fp32 products in fp32 (no TF32).
    const cublasStatus_t status = cublasSetStream(handle, s);
    if (status != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(handle);
      TFORMER_CUBLAS_CHECK(status);
    }
    cublas_ = handle;
  }
  return cublas_;
}

DeviceState::~DeviceState() {
  // At process exit the CUDA runtime may already be unloading; errors are ignored.
  if (stream_ == nullptr || cudaSetDevice(index_) != cudaSuccess) return;
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  cudaGetLastError();
}

}  // namespace tformer::cuda
