// tformer's training API, what the bindings (the Python Trainer) use: TrainGraph, one
// training step over a Transformer (train_graph.cpp), and the learning-rate schedules
// (schedule.cpp). The layers it is built from are internal (cpp/training/train_layers.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tformer/model.h"
#include "tformer/train_ops.h"

namespace tformer::training {

// Learning-rate schedules. inverse_sqrt is the paper's (section 5.3):
//   lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
// and, with a peak lr given, the same shape scaled so that its peak (at step = warmup) is lr.
// cosine: linear warmup to lr, then half a cosine down to 0 at total_steps. constant: lr.

enum class Schedule { inverse_sqrt, cosine, constant };

struct ScheduleOptions {
  Schedule kind = Schedule::inverse_sqrt;
  double peak_lr = 0.0;  // <= 0 with inverse_sqrt: the paper's formula
  int64_t warmup_steps = 4000;
  int64_t total_steps = 0;  // cosine only
  int64_t d_model = 512;
};

Schedule parse_schedule(const std::string& name);
void validate(const ScheduleOptions& o);     // std::invalid_argument naming the bad field
double learning_rate(const ScheduleOptions& o, int64_t step);  // step is 1-based

// One training step's computation graph over a Transformer: forward with saved
// activations, label-smoothed cross-entropy, backward into gradient buffers (one per
// trainable parameter; tied/shared matrices share one buffer), and the AdamW update.
//
// All gradients live in ONE flat f32 buffer, laid out in the order the backward finishes
// them (logits and the top decoder layer first, source embeddings last; a tied/shared
// matrix sits where its last writer finishes it). Consecutive gradients are grouped into
// buckets; run() can announce each bucket as soon as it is final, so that data-parallel
// training starts its all-reduce while the backward is still running.
//
// The optimizer state has the same layout: the AdamW moments are two flat f32 buffers,
// and the model's trainable parameters become views into one flat buffer of the compute
// dtype, so one AdamW launch updates everything (padding between views stays zero: zero
// gradients and moments leave a zero parameter zero). Mixed precision (compute dtype
// f16/bf16, CUDA): the model holds its weights in that dtype for the forward and
// backward, the gradients still accumulate in f32, and a flat f32 master copy is what
// AdamW updates, writing the rounded weights back into the model in the same launch.

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

// A run of the flat gradient buffer whose gradients become final together (elements).
struct GradBucket {
  int64_t offset = 0;
  int64_t size = 0;
};

// Called by run() with a bucket's index once the backward no longer writes into it (on the
// calling thread, between layers; on a GPU after the device has finished the writes).
using BucketReady = std::function<void(int64_t bucket)>;

class TrainGraph {
 public:
  // frozen: parameters that get no gradient (fixed position tables, final_logits_bias).
  // bucket_bytes: a bucket closes at the first layer boundary where it holds at least this
  // many bytes (0: one bucket per layer boundary).
  // compute: the dtype of the forward and backward. f32 needs an f32 model; f16/bf16 need
  // a CUDA model of f32 (converted in place: the model's weights become `compute`, the
  // master copy keeps their f32 values) or of `compute` already.
  TrainGraph(Transformer& model, const std::set<std::string>& frozen, int64_t bucket_bytes = 4 << 20,
             DType compute = DType::f32);

  // Forward (and, with grad_scale != 0, backward: gradients += grad_scale * d(loss sum)).
  // tgt_in: decoder inputs (start token first); labels: int32 (batch, tgt_len) host,
  // ignore_index where nothing is predicted. on_ready (optional) hears of each bucket, in
  // bucket order, as the backward finishes it.
  // Thread safety: run reads the model's weights under its shared lock, adamw_step writes
  // them under the exclusive one; one TrainGraph is driven by one thread at a time.
  LossSum run(const TokenBatch& src, const TokenBatch& tgt_in, const Tensor& labels, const StepOptions& opt,
              float grad_scale, const BucketReady* on_ready = nullptr);

  void zero_grad();
  double grad_norm() const;  // global L2 norm of all gradients
  // AdamW on every trainable parameter, one launch over the flat buffers; gradients are
  // multiplied by grad_multiplier first (clipping, loss-scale unscaling).
  void adamw_step(const ops::AdamWOptions& opt, float grad_multiplier);

  const std::vector<std::string>& trainable() const { return trainable_; }
  DType compute_dtype() const { return compute_; }
  bool mixed() const { return compute_ != DType::f32; }
  Tensor& grad(const std::string& name);         // resolves tied/shared names
  Tensor& moment(const std::string& name, int which);  // 0: first, 1: second (views)
  Tensor& master(const std::string& name);       // the f32 master copy (mixed precision only)

  const Tensor& flat_grad() const { return flat_grad_; }  // every gradient (views into it)
  const std::vector<GradBucket>& buckets() const { return buckets_; }
  int64_t grad_offset(const std::string& name);  // where grad(name) starts in flat_grad()

 private:
  // Backward stages, in the order run() finishes them: 0 = logits + decoder final norm,
  // then each decoder layer (top first), decoder embeddings, encoder final norm, each
  // encoder layer (top first), source embeddings.
  int stage_of(const ParameterPlace& place) const;
  int num_stages() const;
  std::string owner(const std::string& name) const;  // the buffer a name writes into
  void stage_done(int stage, const BucketReady* on_ready) const;
  // A parameter replaced since (set_parameter, another TrainGraph) no longer views
  // flat_param_: take its value into the flat buffers and point the model back at the view.
  // Callers hold the model's weights lock exclusively (shared for parameters_replaced).
  bool parameters_replaced() const;
  void sync_parameters();

  Transformer& model_;
  DType compute_ = DType::f32;
  std::vector<ParameterAlias> aliases_;  // tied names: their gradients add into their owner's
  std::vector<std::string> trainable_;
  std::map<std::string, Tensor> grads_, m_, v_, params_, master_;  // views into the flat buffers
  std::map<std::string, int64_t> offsets_;
  ModelWeights grads_typed_;  // grads_ as the model's weight structs (undefined: frozen), for run()
  struct Bound {              // a trainable parameter: the model's member, its flat view, master
    Tensor* held;
    Tensor* view;
    Tensor* master;  // nullptr unless mixed precision
  };
  std::vector<Bound> bound_;
  Tensor flat_grad_, flat_m_, flat_v_;
  Tensor flat_param_;   // compute dtype: the model's trainable weights are views of it
  Tensor flat_master_;  // f32 master weights (mixed precision), else empty
  std::vector<GradBucket> buckets_;
  std::vector<int64_t> stage_bucket_;  // the bucket closed by each stage, or -1
};

}  // namespace tformer::training
