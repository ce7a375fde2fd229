// One training step's computation graph over a Transformer: forward with saved
// activations, label-smoothed cross-entropy, backward into gradient buffers (one per
// trainable parameter; tied/shared matrices share one buffer), and the AdamW update.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "tformer/model.h"
#include "tformer/train_ops.h"
#include "train_layers.h"

namespace tformer::training {

struct StepOptions {
  float label_smoothing = 0.0f;
  float dropout = 0.0f;             // embeddings and sublayer outputs
  float activation_dropout = 0.0f;  // after the FFN activation
  uint64_t seed = 0;                // of this step's dropout masks
  int32_t ignore_index = -100;
};

struct LossSum {
  double loss = 0.0;   // summed over the counted tokens
  int64_t tokens = 0;  // target tokens that count (labels != ignore_index)
};

class TrainGraph {
 public:
  // frozen: parameters that get no gradient (fixed position tables, final_logits_bias).
  TrainGraph(Transformer& model, const std::set<std::string>& frozen);

  // Forward (and, with grad_scale != 0, backward: gradients += grad_scale * d(loss sum)).
  // tgt_in: decoder inputs (start token first); labels: int32 (batch, tgt_len) host,
  // ignore_index where nothing is predicted.
  LossSum run(const TokenBatch& src, const TokenBatch& tgt_in, const Tensor& labels, const StepOptions& opt,
              float grad_scale);

  void zero_grad();
  double grad_norm() const;  // global L2 norm of all gradients
  // AdamW on every trainable parameter; gradients are multiplied by grad_multiplier first.
  void adamw_step(const ops::AdamWOptions& opt, float grad_multiplier);

  const std::vector<std::string>& trainable() const { return trainable_; }
  Tensor& grad(const std::string& name);         // resolves tied/shared names
  Tensor& moment(const std::string& name, int which);  // 0: first, 1: second

 private:
  Transformer& model_;
  std::vector<std::string> trainable_;
  std::map<std::string, Tensor> grads_, m_, v_;
};

}  // namespace tformer::training
