// CachingAllocator: see allocator.h.
#include "allocator.h"

#include <stdexcept>
#include <string>

#include "cuda_check.h"

namespace tformer::cuda {

size_t CachingAllocator::round_size(size_t bytes) {
  constexpr size_t kMinBlock = 512;
  if (bytes <= 4096) return bytes <= kMinBlock ? kMinBlock : (bytes + kMinBlock - 1) / kMinBlock * kMinBlock;
  // Four classes per power of two: step = 2^(floor(log2(bytes)) - 2).
  size_t top = 1;
  while ((top << 1) <= bytes) top <<= 1;
  const size_t step = top >> 2;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = free_blocks_.find(size);
  if (it != free_blocks_.end() && !it->second.empty()) {
    void* ptr = it->second.back();
    it->second.pop_back();
    cached_bytes_ -= size;
    in_use_bytes_ += size;
    return ptr;
  }
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, size);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it, give the cache back, try once more
    const size_t was_cached = cached_bytes_;
    release_cached_locked();
    err = cudaMalloc(&ptr, size);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw std::runtime_error("CUDA out of memory: tried to allocate " + std::to_string(bytes) +
                               " bytes on cuda:" + std::to_string(device_index_) + " (" +
                               std::to_string(in_use_bytes_) + " bytes in use by tformer, " +
                               std::to_string(was_cached) + " bytes cached were freed before retrying)");
    }
  }
  TFORMER_CUDA_CHECK(err);
  in_use_bytes_ += size;
  return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  free_blocks_[size].push_back(ptr);
  cached_bytes_ += size;
  in_use_bytes_ -= size;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

size_t CachingAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_bytes_;
}

size_t CachingAllocator::in_use_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return in_use_bytes_;
}

void CachingAllocator::release_cached_locked() {
  if (cached_bytes_ == 0) return;
  // A cached block may still be read by a kernel queued before it was freed.
  TFORMER_CUDA_CHECK(cudaDeviceSynchronize());
  for (auto& entry : free_blocks_) {
    while (!entry.second.empty()) {  // pop first: a throwing cudaFree leaves no dangling entry
      void* ptr = entry.second.back();
      entry.second.pop_back();
      cached_bytes_ -= entry.first;
      TFORMER_CUDA_CHECK(cudaFree(ptr));
    }
  }
  free_blocks_.clear();
}

CachingAllocator::~CachingAllocator() {
  // At process exit the CUDA runtime may already be gone; errors are ignored.
  if (cached_bytes_ == 0 || cudaSetDevice(device_index_) != cudaSuccess) return;
  for (auto& entry : free_blocks_)
    for (void* ptr : entry.second) cudaFree(ptr);
  cudaGetLastError();
}

}  // namespace tformer::cuda
