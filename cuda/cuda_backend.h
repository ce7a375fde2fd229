// CudaBackend: tformer::Backend on NVIDIA GPUs. Created only by the factory in
// factory.cu, after it has checked that a driver and a device are there.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "device_state.h"
#include "tformer/backend.h"

namespace tformer::cuda {

class CudaBackend final : public Backend {
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

  void gemm(const GemmParams& p, int device_index) override;
  void bias_act(const BiasActParams& p, int device_index) override;
  void gated_act(const GatedActParams& p, int device_index) override;
  void layer_norm(const LayerNormParams& p, int device_index) override;
  void embedding(const EmbeddingParams& p, int device_index) override;
  void attention(const AttentionParams& p, int device_index) override;
  void cast(const CastParams& p, int device_index) override;
  void gather_rows(const GatherRowsParams& p, int device_index) override;
  void copy_2d(const Copy2dParams& p, int device_index) override;

  // Training (train_*.cu); layer_norm and attention fill mean/rstd and lse when asked.
  bool saves_training_stats() const override { return true; }
  void layer_norm_backward(const LayerNormBackwardParams& p, int device_index) override;
  void bias_act_backward(const BiasActBackwardParams& p, int device_index) override;
  void gated_act_backward(const GatedActBackwardParams& p, int device_index) override;
  void sum_rows(const SumRowsParams& p, int device_index) override;
  void attention_backward(const AttentionBackwardParams& p, int device_index) override;
  void embedding_backward(const EmbeddingBackwardParams& p, int device_index) override;
  void cross_entropy(const CrossEntropyParams& p, int device_index) override;
  void dropout(const DropoutParams& p, int device_index) override;
  void adamw(const AdamWParams& p, int device_index) override;
  double sum_squares(const SumSquaresParams& p, int device_index) override;

 private:
  // A device's state, locked for the calling scope (threads: see device_state.h).
  struct LockedDevice {
    DeviceState& state;
    std::unique_lock<std::mutex> lock;
  };

  // Checks the index, makes the device current for this host thread (cudaSetDevice is
  // per thread) and returns its state.
  DeviceState& device(int device_index);
  // The same, with the device's mutex held until the result goes out of scope.
  LockedDevice lock_device(int device_index);

  std::vector<std::unique_ptr<DeviceState>> devices_;
  std::string name_;
};

}  // namespace tformer::cuda
