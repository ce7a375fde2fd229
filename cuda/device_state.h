// What the backend keeps per device: the caching allocator, and one stream and one
// cuBLAS handle, both created on first use. All of a device's work goes to its one
// stream, in call order. Calls for one device are expected from one thread at a time
// (a cuBLAS handle is not safe for concurrent use); creation is guarded anyway.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <mutex>

#include "allocator.h"

namespace tformer::cuda {

class DeviceState {
 public:
  explicit DeviceState(int index) : index_(index), allocator_(index) {}
  ~DeviceState();  // never throws
  DeviceState(const DeviceState&) = delete;
  DeviceState& operator=(const DeviceState&) = delete;

  int index() const { return index_; }
  CachingAllocator& allocator() { return allocator_; }
  // The device must be current (CudaBackend::device() makes it so).
  cudaStream_t stream();
  cublasHandle_t cublas();  // bound to stream()

 private:
  const int index_;
  CachingAllocator allocator_;
  std::mutex mutex_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
};

}  // namespace tformer::cuda
