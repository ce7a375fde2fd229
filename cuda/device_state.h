// What the backend keeps per device: the caching allocator, and one stream and one
// cuBLAS handle, both created on first use. All of a device's work goes to its one
// stream, in call order.
//
// Threads. A model may be used from several host threads at once (backend.h). The
// backend serialises them per device: every CudaBackend call that touches the stream
// or the cuBLAS handle holds the device's mutex() while it enqueues its work, but not
// while it waits for the GPU in synchronize() or copy_to_host() (the runtime itself may
// wait inside a copy to pageable host memory, lock held: correct, only slower), so
//   - the cuBLAS handle, which is not safe for concurrent use, has one user at a time;
//   - the lazy creation of the stream and handle happens once;
//   - an op made of several launches (gather_rows, attention with weights_out) is
//     enqueued without another thread's work in between.
// One stream per device (rather than one per thread) also keeps the caching allocator
// simple: a block freed by one call and handed to the next is ordered after every
// kernel that used it. The allocator has its own mutex; the lock order is device
// mutex, then allocator mutex, never the reverse.
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
  std::mutex& mutex() { return mutex_; }
  // The caller holds mutex() and the device is current (CudaBackend::lock_device).
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
