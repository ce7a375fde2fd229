// Stands in for cuda_check.h, launch_util.h, allocator.h, CUB (and, through
// emu_cublas.h, <cublas_v2.h>) when the kernels and launchers of cuda/*.cu are compiled
// for the emulator (see emulate.py): host-memory temporaries, no-op error checks. The
// launchers' declarations are not here: the emulated files include cuda/ops.h itself,
// the header the real build uses.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <vector>
#include <stdexcept>
#include <string>

#include "emu.h"
#include "emu_cublas.h"
#include "emu_mma.h"
#include "tformer/backend.h"

// CUB's stable radix sort of (key, value) pairs, as std::stable_sort on the host (the
// kernels that consume its output are what the emulator is for).
namespace cub {
struct DeviceRadixSort {
  template <typename K, typename V>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, const V* values_in,
                               V* values_out, int n, int = 0, int = int(sizeof(K) * 8), cudaStream_t = nullptr) {
    if (temp == nullptr) {
      temp_bytes = 1;
      return cudaSuccess;
    }
    std::vector<std::pair<K, V>> v(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) v[i] = {keys_in[i], values_in[i]};
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (int i = 0; i < n; ++i) keys_out[i] = v[i].first, values_out[i] = v[i].second;
    return cudaSuccess;
  }
};
}  // namespace cub

namespace tformer::cuda {

class CachingAllocator {
 public:
  void* allocate(size_t bytes) {
    void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
    if (p == nullptr)  // the real allocator's wording, which the core and the checks expect
      throw std::runtime_error("CUDA out of memory: the emulator could not allocate " + std::to_string(bytes) + " bytes");
    std::memset(p, 0xff, bytes);  // NaN-like garbage: temporaries must be written before use
    return p;
  }
  void deallocate(void* p, size_t) { std::free(p); }
};

class ScopedBlock {
 public:
  ScopedBlock(CachingAllocator& a, size_t bytes) : a_(a), bytes_(bytes), p_(a.allocate(bytes)) {}
  ~ScopedBlock() { a_.deallocate(p_, bytes_); }
  char* data() const { return static_cast<char*>(p_); }
  template <typename T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  CachingAllocator& a_;
  size_t bytes_;
  void* p_;
};

inline void allow_shared_memory(const void*, size_t smem, const char* op, const std::string& what) {
  if (smem > 99 * 1024)  // the smallest opt-in limit of the target archs (sm_86 / sm_89)
    throw std::runtime_error(std::string("cuda ") + op + ": " + what + " needs " + std::to_string(smem) +
                             " bytes of shared memory per block, more than sm_86 allows");
}

}  // namespace tformer::cuda

#define TFORMER_CUDA_CHECK(call)                                                              \
  do {                                                                                        \
    if ((call) != cudaSuccess) throw std::runtime_error("emu: " #call " failed");           \
  } while (0)
#define TFORMER_CUDA_CHECK_LAUNCH(kernel_name) \
  do {                                         \
  } while (0)
