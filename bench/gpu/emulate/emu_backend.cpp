// tformer::Backend over the emulated CUDA launchers (emulate.py's rewrite of cuda/*.cu):
// host memory, and the real launchers and kernels of the CUDA backend running on the
// CPU emulator; gemm is gemm.cu's own launcher over emu_gemm.cpp's host cuBLAS stand-in.
// Two users: check_training.cpp built with TFORMER_LAB_EMULATED (make_emulated_backend),
// and libtformer_cuda_emulated.so (build_library.sh), which exports the same factory as
// libtformer_cuda.so so that the core loads it with TFORMER_CUDA_LIBRARY=<path>.
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>

#include "emu_runtime.h"
#include "ops.h"  // cuda/ops.h: the op entries, as the real backend sees them

namespace tformer::cuda {
namespace {

class EmulatedBackend final : public StreamBackend {
 public:
  DeviceType type() const override { return DeviceType::cuda; }
  std::string name() const override {
    return "cuda kernels on the CPU emulator (bench/gpu/emulate: host memory, host gemm for cuBLAS)";
  }
  int device_count() const override { return 1; }
  // Host memory from aligned_alloc (thread-safe), poisoned with 0xff bytes.
  void* allocate(size_t bytes, int i) override {
    check(i);
    return allocator_.allocate(bytes);
  }
  void deallocate(void* p, size_t bytes, int) override { allocator_.deallocate(p, bytes); }
  void empty_cache() override {}
  void copy_from_host(void* d, const void* s, size_t n, int i) override { Lock l(this, i); std::memcpy(d, s, n); }
  void copy_to_host(void* d, const void* s, size_t n, int i) override { Lock l(this, i); std::memcpy(d, s, n); }
  void copy_on_device(void* d, const void* s, size_t n, int i) override { Lock l(this, i); std::memmove(d, s, n); }
  void fill_zero(void* d, size_t n, int i) override { Lock l(this, i); std::memset(d, 0, n); }
  void synchronize(int i) override { Lock l(this, i); }

  // The op entries (cuda/ops.h: every TFORMER_CUDA_OP of the emulated .cu files) lock
  // through these; the emulator has no stream (nullptr) and no cuBLAS handle (gemm.cu's
  // launcher calls emu_gemm.cpp's host stand-in, which ignores it).
  Locked lock_device(int i) override {
    check(i);
    return {nullptr, allocator_, std::unique_lock<std::mutex>(mutex_)};
  }
  cublasHandle_t cublas(int) override { return nullptr; }
  void wait(cudaStream_t) override {}

 private:
  // The emulator's state (emu::block(), the grid globals, __shared__ statics) is one
  // per process: kernels from several host threads run one at a time, as CudaBackend
  // serialises each device's stream.
  struct Lock {
    Lock(EmulatedBackend* b, int device_index) : lock((check(device_index), b->mutex_)) {}  // checks, then locks
    std::lock_guard<std::mutex> lock;
  };
  static void check(int device_index) {
    if (device_index != 0)
      throw std::invalid_argument("cuda:" + std::to_string(device_index) + " does not exist (1 CUDA device visible)");
  }
  CachingAllocator allocator_;
  std::mutex mutex_;
};

}  // namespace
}  // namespace tformer::cuda

tformer::Backend* make_emulated_backend() { return new tformer::cuda::EmulatedBackend(); }

// libtformer_cuda.so's factory (factory.cu), for the emulated library: always available.
extern "C" __attribute__((visibility("default"))) tformer::Backend* tformer_cuda_backend_create(char* error,
                                                                                                 size_t error_size) {
  try {
    return make_emulated_backend();
  } catch (const std::exception& e) {
    if (error != nullptr && error_size > 0) std::snprintf(error, error_size, "emulated CUDA backend: %s", e.what());
  }
  return nullptr;
}
