// A caching allocator for one device. Freed blocks go to a free list keyed by their
// rounded size and are handed out again without cudaMalloc/cudaFree (both of which
// synchronize the device), so a decode loop allocates nothing once warm.
// All work runs on the device's one stream, so a block freed on the host and reused
// by a later kernel is ordered after every kernel that used it before.
#pragma once

#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace tformer::cuda {

class CachingAllocator {
 public:
  explicit CachingAllocator(int device_index) : device_index_(device_index) {}
  ~CachingAllocator();  // returns cached blocks to the device; never throws
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Never returns null. The device must be current. Throws std::runtime_error
  // ("CUDA out of memory: ...") when cudaMalloc fails even after emptying the cache.
  void* allocate(size_t bytes);
  // `bytes` is the size given to allocate().
  void deallocate(void* ptr, size_t bytes);
  // Waits for the device, then frees every cached block. The device must be current.
  void empty_cache();

  size_t cached_bytes() const;
  size_t in_use_bytes() const;

  // The size class a request is served from: a multiple of 512 bytes, with four
  // classes per power of two above 4 KiB, so at most 25% of a block is slack.
  static size_t round_size(size_t bytes);

 private:
  void release_cached_locked();

  const int device_index_;
  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;  // size class -> blocks
  size_t cached_bytes_ = 0;
  size_t in_use_bytes_ = 0;
};

}  // namespace tformer::cuda
