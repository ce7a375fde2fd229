// tformer::Backend over the emulated CUDA launchers (emulate.py's rewrite of cuda/*.cu):
// host memory, and the real launchers and kernels of the CUDA backend running on the
// CPU emulator. check_training.cpp built with TFORMER_LAB_EMULATED drives it.
#include <cstring>

#include "emu_ops.h"

namespace tformer::cuda {
namespace {

class EmulatedBackend final : public Backend {
 public:
  DeviceType type() const override { return DeviceType::cuda; }
  std::string name() const override { return "cuda kernels on the CPU emulator (bench/gpu/emulate)"; }
  int device_count() const override { return 1; }
  void* allocate(size_t bytes, int) override { return allocator_.allocate(bytes); }
  void deallocate(void* p, size_t bytes, int) override { allocator_.deallocate(p, bytes); }
  void empty_cache() override {}
  void copy_from_host(void* d, const void* s, size_t n, int) override { std::memcpy(d, s, n); }
  void copy_to_host(void* d, const void* s, size_t n, int) override { std::memcpy(d, s, n); }
  void copy_on_device(void* d, const void* s, size_t n, int) override { std::memmove(d, s, n); }
  void fill_zero(void* d, size_t n, int) override { std::memset(d, 0, n); }
  void synchronize(int) override {}

  void gemm(const GemmParams&, int) override { not_emulated("gemm"); }
  void bias_act(const BiasActParams&, int) override { not_emulated("bias_act"); }
  void layer_norm(const LayerNormParams& p, int) override { layer_norm_forward(p, nullptr); }
  void embedding(const EmbeddingParams&, int) override { not_emulated("embedding"); }
  void attention(const AttentionParams& p, int) override { attention_forward(p, allocator_, nullptr); }
  void cast(const CastParams&, int) override { not_emulated("cast"); }
  void gather_rows(const GatherRowsParams&, int) override { not_emulated("gather_rows"); }
  void copy_2d(const Copy2dParams&, int) override { not_emulated("copy_2d"); }

  bool saves_training_stats() const override { return true; }
  void layer_norm_backward(const LayerNormBackwardParams& p, int) override {
    cuda::layer_norm_backward(p, allocator_, nullptr);
  }
  void activation_backward(const ActivationBackwardParams& p, int) override { cuda::activation_backward(p, nullptr); }
  void sum_rows(const SumRowsParams& p, int) override { cuda::sum_rows(p, allocator_, nullptr); }
  void attention_backward(const AttentionBackwardParams& p, int) override {
    cuda::attention_backward(p, allocator_, nullptr);
  }
  void embedding_backward(const EmbeddingBackwardParams& p, int) override {
    cuda::embedding_backward(p, allocator_, nullptr);  // CUB's sort: emu_ops.h's host stand-in
  }
  void cross_entropy(const CrossEntropyParams& p, int) override { cuda::cross_entropy(p, nullptr); }
  void dropout(const DropoutParams& p, int) override { cuda::dropout(p, nullptr); }
  void adamw(const AdamWParams& p, int) override { cuda::adamw(p, nullptr); }
  double sum_squares(const SumSquaresParams& p, int) override {
    double r = 0.0;
    cuda::sum_squares(p, allocator_, nullptr, &r);
    return r;
  }

 private:
  [[noreturn]] static void not_emulated(const char* op) {
    throw std::runtime_error(std::string(op) + " is not emulated");
  }
  CachingAllocator allocator_;
};

}  // namespace
}  // namespace tformer::cuda

tformer::Backend* make_emulated_backend() { return new tformer::cuda::EmulatedBackend(); }
