// CudaBackend: tformer::Backend on NVIDIA GPUs (its ops: the TFORMER_CUDA_OP entries of
// the launchers' files, ops.h). Created only by the factory in
// factory.cu, after it has checked that a driver and a device are there.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "device_state.h"
#include "ops.h"

namespace tformer::cuda {

class CudaBackend final : public StreamBackend {
 public:
  explicit CudaBackend(int device_count);
  ~CudaBackend() override = default;

  DeviceType type() const override { return DeviceType::cuda; }
  std::string name() const override { return name_; }
  int device_count() const override { return static_cast<int>(devices_.size()); }

  void* allocate(size_t bytes, int device_index) override;
  void deallocate(void* ptr, size_t bytes, int device_index) override;
  void empty_cache() override;
  void copy_from_host(void* dst, const void* src, size_t bytes, int device_index) override;
  void copy_to_host(void* dst, const void* src, size_t bytes, int device_index) override;
  void copy_on_device(void* dst, const void* src, size_t bytes, int device_index) override;
  void fill_zero(void* dst, size_t bytes, int device_index) override;
  void synchronize(int device_index) override;

  // The op entries (ops.h) lock a device through these.
  Locked lock_device(int device_index) override;
  cublasHandle_t cublas(int device_index) override;
  void wait(cudaStream_t stream) override;

 private:
  // A device's state, locked for the calling scope (threads: see device_state.h).
  struct LockedState {
    DeviceState& state;
    std::unique_lock<std::mutex> lock;
  };

  // Checks the index, makes the device current for this host thread (cudaSetDevice is
  // per thread) and returns its state.
  DeviceState& device(int device_index);
  // The same, with the device's mutex held until the result goes out of scope.
  LockedState lock_state(int device_index);

  std::vector<std::unique_ptr<DeviceState>> devices_;
  std::string name_;
};

}  // namespace tformer::cuda
