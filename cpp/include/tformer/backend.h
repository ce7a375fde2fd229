// The device backend interface. One Backend object per device kind; ops.cpp checks
// arguments on Tensors, then calls the backend with a plain params struct of raw
// pointers and sizes. The CUDA backend lives in its own shared library
// (libtformer_cuda.so) that is loaded with dlopen the first time a CUDA device is
// asked for, so `import tformer` on a machine without CUDA never touches CUDA
// libraries. This header (with dtype.h and op_table.h) and the op family headers
// (tformer/ops/<family>.h, for their params structs) are all that library sees of the core.
//
// Conventions: all matrices are row-major; strides are in elements; every pointer
// points to memory of the backend's device unless said otherwise.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "tformer/dtype.h"
#include "tformer/op_table.h"

namespace tformer {

// The activations of bias_act and gated_act.
enum class Activation : int32_t { none = 0, relu = 1, gelu = 2, gelu_tanh = 3, silu = 4 };

class Backend {
 public:
  Backend() {
    for (auto& f : resolved_) f.store(nullptr, std::memory_order_relaxed);
  }
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual ~Backend() = default;

  virtual DeviceType type() const = 0;
  virtual std::string name() const = 0;        // e.g. "cpu (OpenBLAS 0.3.x, 2 threads)"
  virtual int device_count() const = 0;

  // Memory. allocate() never returns null: it throws std::runtime_error (or
  // std::bad_alloc) naming the size when the device is out of memory.
  virtual void* allocate(size_t bytes, int device_index) = 0;
  virtual void deallocate(void* ptr, size_t bytes, int device_index) = 0;
  virtual void empty_cache() = 0;  // returns cached blocks to the device
  virtual void copy_from_host(void* dst, const void* src, size_t bytes, int device_index) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes, int device_index) = 0;
  virtual void copy_on_device(void* dst, const void* src, size_t bytes, int device_index) = 0;
  virtual void fill_zero(void* dst, size_t bytes, int device_index) = 0;
  virtual void synchronize(int device_index) = 0;

  // Ops. Each op family declares its params struct(s) in tformer/ops/<family>.h, and each
  // device registers one entry per op (op_table.h): run() calls this backend's entry for
  // P on device_index's current stream; inputs are already checked. A model may be used
  // from several host threads at once: a backend serialises or separates whatever
  // per-device state (streams, library handles) is not thread-safe.
  //
  // Training conventions (llm.c's): gradients of parameters accumulate (+=); gradients of
  // activations are written (=) unless a flag says to add. Float32 statistics (mean, rstd,
  // lse, loss) are float32 whatever `dtype` is.
  template <class P>
  typename OpResult<P>::type run(const P& p, int device_index) {
    const int slot = op_slot<P>();
    OpFn fn = resolved_[slot].load(std::memory_order_acquire);
    if (fn == nullptr) fn = resolve(slot, P::op_name);
    return reinterpret_cast<OpEntry<P>>(fn)(*this, p, device_index);
  }
  // The entries of this backend's device, by op name.
  virtual const OpTable& op_table() const = 0;

  // Whether layer_norm and attention fill mean_out / rstd_out and lse_out (an older
  // backend ignores them); training ops check it first.
  virtual bool saves_training_stats() const { return false; }

 private:
  // The first call of an op on this backend: find its entry, keep it for the next calls.
  OpFn resolve(int slot, const char* op) {
    OpFn fn = op_table().find(op);
    if (fn == nullptr) {
      const char* device = type() == DeviceType::cuda ? "cuda" : "cpu";
      throw std::runtime_error(std::string(op) + " is not implemented on " + device + " yet");
    }
    resolved_[slot].store(fn, std::memory_order_release);
    return fn;
  }

  std::atomic<OpFn> resolved_[OpTable::kCapacity];
};

}  // namespace tformer

// The CUDA backend library exports this C entry point. It returns a new backend, or
// null with a message in `error` (of size error_size) when no usable GPU is found.
extern "C" {
typedef tformer::Backend* (*tformer_backend_factory_fn)(char* error, size_t error_size);
}
#define TFORMER_CUDA_BACKEND_SYMBOL "tformer_cuda_backend_create"
