// Launcher helpers shared by the op families: a scoped temporary from the caching
// allocator, and the opt-in to more than 48 KiB of dynamic shared memory.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

#include "allocator.h"
#include "cuda_check.h"

namespace tformer::cuda {

// A temporary from the caching allocator, returned when the scope ends. Work already
// queued on the stream that uses it stays ordered before any later user of the block
// (one stream per device: see allocator.h).
class ScopedBlock {
 public:
  ScopedBlock(CachingAllocator& allocator, size_t bytes)
      : allocator_(allocator), bytes_(bytes), ptr_(allocator.allocate(bytes)) {}
  ~ScopedBlock() { allocator_.deallocate(ptr_, bytes_); }
  ScopedBlock(const ScopedBlock&) = delete;
  ScopedBlock& operator=(const ScopedBlock&) = delete;
  char* data() const { return static_cast<char*>(ptr_); }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  CachingAllocator& allocator_;
  size_t bytes_;
  void* ptr_;
};

// Shared memory a kernel needs beyond the default 48 KiB: opted into, or a clear error
// naming `op` and `what` asked for it.
inline void allow_shared_memory(const void* kernel, size_t smem, const char* op, const std::string& what) {
  if (smem <= 48 * 1024) return;
  int device = 0, optin = 0;
  TFORMER_CUDA_CHECK(cudaGetDevice(&device));
  TFORMER_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (smem > static_cast<size_t>(optin)) {
    throw std::runtime_error(std::string("cuda ") + op + ": " + what + " needs " + std::to_string(smem) +
                             " bytes of shared memory per block, cuda:" + std::to_string(device) + " allows " +
                             std::to_string(optin));
  }
  TFORMER_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
}

}  // namespace tformer::cuda
