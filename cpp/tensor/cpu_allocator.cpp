#include "cpu_allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

#include "tformer/errors.h"

namespace tformer::cpu {
namespace {

constexpr size_t kAlignment = 64;
// Blocks below this size are left to malloc's own free lists; larger ones are cached.
constexpr size_t kCacheMinBytes = 1 << 16;
// Never keep more than this much memory idle in the cache.
constexpr size_t kCacheMaxBytes = size_t(4) << 30;

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> free_blocks;  // rounded size -> block
  size_t bytes = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // leaked on purpose: outlives static tensors at exit
  return *c;
}

size_t round_size(size_t bytes) {
  if (bytes < kCacheMinBytes) return (bytes + kAlignment - 1) / kAlignment * kAlignment;
  const size_t step = bytes < (size_t(1) << 22) ? (size_t(1) << 12) : (size_t(1) << 20);
  return (bytes + step - 1) / step * step;
}

}  // namespace

void* allocate(size_t bytes) {
  const size_t size = round_size(bytes == 0 ? 1 : bytes);
  if (size >= kCacheMinBytes) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      c.bytes -= size;
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlignment, size);
  if (!p) {
    empty_cache();
    p = std::aligned_alloc(kAlignment, size);
  }
  if (!p) throw_runtime_error("out of host memory: could not allocate ", bytes, " bytes");
  return p;
}

void deallocate(void* ptr, size_t bytes) {
  if (!ptr) return;
  const size_t size = round_size(bytes == 0 ? 1 : bytes);
  if (size >= kCacheMinBytes) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.bytes + size <= kCacheMaxBytes) {
      c.free_blocks.emplace(size, ptr);
      c.bytes += size;
      return;
    }
  }
  std::free(ptr);
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& kv : c.free_blocks) std::free(kv.second);
  c.free_blocks.clear();
  c.bytes = 0;
}

size_t cached_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.bytes;
}

}  // namespace tformer::cpu
