// How the CUDA op launchers (one file per op family, cuda/<family>.cu) become the CUDA
// device's op entries: each file ends with one registration line per op,
//
//   TFORMER_CUDA_OP(layer_norm);
//
// which makes `entry<&layer_norm>` (lock the device, run the launcher on its stream)
// the entry of LayerNormParams::op_name in this library's op table (tformer/op_table.h).
// A launcher takes the plain params struct of its family header (tformer/ops/<family>.h)
// and, after it, one of
//   (cudaStream_t)                          most ops;
//   (CachingAllocator&, cudaStream_t)       ops that draw temporaries from the allocator;
//   (cublasHandle_t, cudaStream_t)          gemm;
//   (CachingAllocator&, cudaStream_t, R*)   ops that return R (Result in the params):
//                                           R is valid once the stream is done, which the
//                                           entry waits for after unlocking.
// Arguments were checked by the core before the call. Launchers throw
// std::invalid_argument for an unsupported dtype or size, and std::runtime_error
// (TFORMER_CUDA_CHECK) when CUDA reports an error.
//
// Device-neutral on purpose: only declarations and templates over opaque handle types,
// so that the real build (nvcc, CudaBackend) and the CPU emulator (bench/gpu/emulate,
// g++, EmulatedBackend) compile the same launchers and the same registrations. Keep CUDA
// runtime calls, cuBLAS and the allocator's definition out of it (cuda_check.h,
// launch_util.h, allocator.h hold those).
#pragma once

#include <driver_types.h>  // cudaStream_t: a type only, no runtime API

#include <mutex>
#include <type_traits>

#include "tformer/backend.h"
#include "tformer/ops/attention.h"

// cuBLAS's opaque handle, declared as cublas_api.h declares it (an identical typedef).
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

namespace tformer::cuda {

class CachingAllocator;  // allocator.h (the emulator: bench/gpu/emulate/emu_runtime.h)

// What the op entries need of a CUDA backend: CudaBackend (cuda_backend.h) and the
// emulator's (bench/gpu/emulate/emu_backend.cpp).
class StreamBackend : public Backend {
 public:
  // A device locked for the holder's scope (threads: device_state.h).
  struct Locked {
    cudaStream_t stream;
    CachingAllocator& allocator;
    std::unique_lock<std::mutex> lock;
  };
  // Checks the index, makes the device current for this host thread, locks it.
  virtual Locked lock_device(int device_index) = 0;
  // The device's cuBLAS handle, bound to its stream; the caller holds the lock.
  virtual cublasHandle_t cublas(int device_index) = 0;
  // Waits until `stream` is done (called unlocked).
  virtual void wait(cudaStream_t stream) = 0;

  // This library's entries (the TFORMER_CUDA_OP lines of its .cu files).
  static OpTable& ops() {
    static OpTable table;
    return table;
  }
  const OpTable& op_table() const override { return ops(); }
  // layer_norm and attention fill mean/rstd and lse when asked.
  bool saves_training_stats() const override { return true; }
};

template <class P>
void launch(void (*f)(const P&, cudaStream_t), StreamBackend&, StreamBackend::Locked& d, int, const P& p) {
  f(p, d.stream);
}
template <class P>
void launch(void (*f)(const P&, CachingAllocator&, cudaStream_t), StreamBackend&, StreamBackend::Locked& d, int,
            const P& p) {
  f(p, d.allocator, d.stream);
}
template <class P>
void launch(void (*f)(const P&, cublasHandle_t, cudaStream_t), StreamBackend& b, StreamBackend::Locked& d,
            int device_index, const P& p) {
  f(p, b.cublas(device_index), d.stream);
}

// The CUDA entry of launcher F: the device locked while F enqueues its work.
template <auto F>
typename OpResult<typename OpParamsOf<decltype(F)>::type>::type entry(
    Backend& backend, const typename OpParamsOf<decltype(F)>::type& p, int device_index) {
  using R = typename OpResult<typename OpParamsOf<decltype(F)>::type>::type;
  auto& b = static_cast<StreamBackend&>(backend);
  if constexpr (std::is_void_v<R>) {
    StreamBackend::Locked d = b.lock_device(device_index);
    launch(F, b, d, device_index, p);
  } else {
    R result{};
    cudaStream_t stream = nullptr;
    {
      StreamBackend::Locked d = b.lock_device(device_index);
      stream = d.stream;
      F(p, d.allocator, d.stream, &result);
    }
    b.wait(stream);  // unlocked, so that other threads may enqueue meanwhile
    return result;
  }
}

// One line per op, after its launcher, in namespace tformer::cuda.
#define TFORMER_CUDA_OP(fn)                                                                        \
  [[maybe_unused]] static const bool tformer_cuda_op_registered_##fn =                             \
      (::tformer::cuda::StreamBackend::ops().add(::tformer::OpParamsOf<decltype(&fn)>::type::op_name, \
                                                 reinterpret_cast<::tformer::OpFn>(&::tformer::cuda::entry<&fn>)), \
       true)

// Launchers that other files of the family call (not ops of their own).
// attention.cu sends q_len 1 here (attention_decode.cu); its key splits take their
// temporary from `allocator`.
void attention_decode(const AttentionParams& p, CachingAllocator& allocator, cudaStream_t stream);
// train_attention_mma.cu: the tensor-core path attention_backward takes when it applies.
bool attention_backward_mma_supported(const AttentionBackwardParams& p);
void attention_backward_mma(const AttentionBackwardParams& p, CachingAllocator& allocator, cudaStream_t stream);

}  // namespace tformer::cuda
