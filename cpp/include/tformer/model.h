// The encoder-decoder Transformer: typed weights (tformer/weights.h) reachable by name,
// and the forward pass. Layers are plain functions over the weight structs (model/*.cpp),
// not an autograd graph.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tformer/config.h"
#include "tformer/decoding.h"
#include "tformer/tensor.h"
#include "tformer/weights.h"
#include "tformer/weights_lock.h"

namespace tformer {

namespace training {
class TrainGraph;
}
namespace decoding {
class StepRunner;
class DecoderStep;
}

// A batch of token ids padded on the right. ids: int32 (batch, max_len) on the host;
// lengths: the real length of each row (1 <= length <= max_len).
struct TokenBatch {
  Tensor ids;
  std::vector<int32_t> lengths;
};

// Thread safety: every public method may be called from several threads at once. Reads
// of the weights (encode, forward, generate, to, copy_parameter) share weights_lock() for
// the whole call and so see one consistent set of weights; writes (set_parameter(s), a
// TrainGraph's update) hold it alone and wait for the reads that are running.
class Transformer {
 public:
  // dtype: float32 everywhere; float16/bfloat16 on CUDA only; int8 on the CPU only (an int8
  // model: its matrices int8 with per-row scales, tformer/ops/int8.h; activations float32).
  Transformer(TransformerConfig config, Device device, DType dtype = DType::f32);

  const TransformerConfig& config() const { return config_; }
  const Device& device() const { return device_; }
  DType dtype() const { return dtype_; }
  // The dtype of activations: dtype(), except float32 for an int8 model.
  DType compute_dtype() const { return dtype_ == DType::i8 ? DType::f32 : dtype_; }

  // int8 models. A parameter "is int8" when the model is int8 and the parameter is a matrix
  // ParameterPlace::int8_scale names (Linear weights, token tables); set_parameter(s) of a
  // float value quantizes it (tformer/ops/int8.h's rule), copy_parameter dequantizes.
  struct Int8Value {
    std::string name;
    Tensor q;      // int8 (rows, cols), the parameter's shape
    Tensor scale;  // float32 (rows)
  };
  bool is_int8_parameter(const std::string& name) const;
  // Sets int8 values and scales as they are (a saved int8 model comes back bit for bit);
  // all checked first, then swapped in under one exclusive hold, like set_parameters.
  void set_int8_parameters(const std::vector<Int8Value>& values);
  // Host copies of an int8 parameter's values and scales, under the shared lock.
  Int8Value copy_int8_parameter(const std::string& name) const;

  // Parameters. set_parameter checks the name and shape and copies to the device.
  void set_parameter(const std::string& name, const Tensor& value);
  // Several at once: all are checked and copied first, then swapped in under one exclusive
  // lock, so no reader sees some of them new and some old (nothing changes on an error).
  void set_parameters(const std::vector<std::pair<std::string, Tensor>>& values);
  // The stored tensor itself: only for a caller holding weights_lock() (the model's own
  // methods, TrainGraph), since a writer may replace or update it in place at any time.
  const Tensor& parameter(const std::string& name) const;
  // The typed weights, read by the forward, the decode loop and training: the same
  // caveat as parameter() (hold weights_lock()). Members not set yet are undefined.
  const ModelWeights& weights() const { return *weights_; }
  // A float32 host copy, taken under the shared lock.
  Tensor copy_parameter(const std::string& name) const;
  std::vector<std::string> parameter_names() const;
  std::vector<std::string> missing_parameters() const;
  bool complete() const { return missing_parameters().empty(); }

  // Held shared by readers, exclusively by writers (see weights_lock.h).
  const WeightsLock& weights_lock() const { return *weights_lock_; }

  // A copy of this model on another device (all parameters copied).
  Transformer to(Device device) const;
  Transformer to(Device device, DType dtype) const;

  // Encoder output (batch, src_len, d_model) on the model's device.
  Tensor encode(const TokenBatch& src) const;
  // Logits (batch, tgt_len, tgt_vocab) on the host (float32).
  Tensor forward(const TokenBatch& src, const TokenBatch& tgt) const;
  // Greedy / beam search / sampling with a KV cache (cpp/decoding/).
  std::vector<GenerationResult> generate(const TokenBatch& src, const GenerationOptions& options) const;

 private:
  // generate's body (cpp/decoding/generate.cpp), run while generate holds the shared lock.
  std::vector<GenerationResult> generate_holding_lock(const TokenBatch& src, const GenerationOptions& options) const;
  // value checked, on the device, in the model's dtype: what set_parameter(s) swap in.
  Tensor checked_copy(const std::string& name, const Tensor& value) const;
  // Name known, shape right, a float tensor, finite (host float32 values): else ValueError.
  void check_value(const std::string& name, const Tensor& value) const;
  // value (a float tensor anywhere) quantized on the host: the int8 matrix; its row scales in `scale`.
  static Tensor quantized(const Tensor& value, Tensor& scale);
  friend class training::TrainGraph;
  friend class decoding::StepRunner;
  friend class Engine;
 public:
  // generate's checks of a call (complete weights, the pad id, GenerationOptions::validate,
  // max_length within the positions table) and its options with the pad id resolved; the
  // engine runs them when a request is submitted (cpp/decoding/generation_checks.cpp).
  // check_weights=false skips the completeness check, the one that takes the weights lock.
  GenerationOptions checked_generation_options(const TokenBatch& src, const GenerationOptions& options,
                                               bool check_weights = true) const;

 private:
  // A batch on the device: ids, per-row lengths and position ids.
  struct DeviceBatch {
    int64_t batch = 0, len = 0;
    Tensor ids;           // int32 (batch, len)
    Tensor lengths;       // int32 (batch)
    Tensor position_ids;  // int32 (batch, len)
  };
  DeviceBatch upload(const TokenBatch& batch, int64_t vocab, const char* what) const;
  Tensor encode_device(const DeviceBatch& src) const;
  Tensor decode_device(const DeviceBatch& tgt, const Tensor& memory, const DeviceBatch& src) const;
  void check_complete() const;
  // The member of weights_ a parameter name fills (no aliases): for writers (set_parameters,
  // to, TrainGraph) holding the lock exclusively, who call tie_weights after replacing one.
  Tensor& slot(const std::string& name) const;

  TransformerConfig config_;
  Device device_;
  DType dtype_ = DType::f32;
  // On the heap, like the lock: slots_ point into it and the model stays movable.
  std::unique_ptr<ModelWeights> weights_;
  struct Slot {
    Shape shape;
    Tensor* member = nullptr;
    Tensor* scale = nullptr;  // int8 models: the member holding this matrix's row scales
  };
  // The slot a name reads, aliases resolved to their owner (ValueError if unknown).
  const Slot& resolved_slot(const std::string& name) const;
  std::map<std::string, Slot> slots_;  // every parameter name (visit_parameters), bound once
  std::vector<ParameterAlias> aliases_;  // names that read another parameter (tied matrices)
  // On the heap: the model stays movable (to() returns one by value).
  std::unique_ptr<WeightsLock> weights_lock_ = std::make_unique<WeightsLock>();
};

}  // namespace tformer
