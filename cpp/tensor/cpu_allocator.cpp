#include "cpu_allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

#include "tformer/errors.h"

namespace tformer::cpu {
namespace {

constexpr size_t kAlignment = 64;
// Blocks below this size are left to malloc's own free lists; larger ones are cached.
constexpr size_t kCacheMinBytes = 1 << 16;
// Never keep more than this much memory idle in the cache.
constexpr size_t kCacheMaxBytes = size_t(1) << 30;

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> free_blocks;    // block size -> block
  std::unordered_map<void*, size_t> block_size;  // every cached-class block handed out or kept
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
    // Reuse the smallest cached block that fits, if it wastes at most a quarter: training
    // batches of varying shapes then share blocks instead of each keeping its own.
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free_blocks.lower_bound(size);
    if (it != c.free_blocks.end() && it->first <= size + size / 4) {
      void* p = it->second;
      c.bytes -= it->first;
      c.free_blocks.erase(it);
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlignment, size);
  if (!p) {
    empty_cache();
    p = std::aligned_alloc(kAlignment, size);
  }
  if (!p) throw_runtime_error("out of host memory: could not allocate ", bytes, " bytes");
  if (size >= kCacheMinBytes) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    c.block_size[p] = size;
  }
  return p;
}

void deallocate(void* ptr, size_t bytes) {
  if (!ptr) return;
  const size_t size = round_size(bytes == 0 ? 1 : bytes);
  if (size >= kCacheMinBytes) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto known = c.block_size.find(ptr);
    const size_t real = known != c.block_size.end() ? known->second : size;  // a reused block may be larger
    if (c.bytes + real <= kCacheMaxBytes) {
      c.free_blocks.emplace(real, ptr);
      c.bytes += real;
      return;
    }
    if (known != c.block_size.end()) c.block_size.erase(known);
  }
  std::free(ptr);
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& kv : c.free_blocks) {
    c.block_size.erase(kv.second);
    std::free(kv.second);
  }
  c.free_blocks.clear();
  c.bytes = 0;
}

size_t cached_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.bytes;
}

}  // namespace tformer::cpu
