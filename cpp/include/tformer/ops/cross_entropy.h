// Op family cross_entropy: label-smoothed cross-entropy fused with its gradient.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// Per row, torch's cross_entropy with label smoothing eps over V classes:
//   loss = (1 - eps) * (lse - x[label]) + eps * (lse - mean(x)),  lse = log sum exp x;
//   dlogits = (softmax(x) - (1 - eps) * onehot(label) - eps / V) * grad_scale.
// Rows whose label is ignore_index get loss 0 and a zero gradient. dlogits (optional)
// may alias logits. Labels are checked on the host before the call.
struct CrossEntropyParams {
  static constexpr char op_name[] = "cross_entropy";
  DType dtype = DType::f32;  // of logits and dlogits
  int64_t rows = 0, vocab = 0;
  float smoothing = 0.0f;
  int32_t ignore_index = -100;
  float grad_scale = 1.0f;
  float* loss = nullptr;          // (rows)
  void* dlogits = nullptr;        // (rows, vocab) or null
  const void* logits = nullptr;   // (rows, vocab)
  const int32_t* labels = nullptr;  // (rows)
};

namespace ops {

// torch.nn.functional.cross_entropy(logits, labels, label_smoothing=eps, ignore_index)
// per row, fused with its gradient: loss (rows) float32 = (1 - eps) * -log p[label] +
// eps/V * sum_c -log p[c] (0 for ignored rows); dlogits (optional) = (softmax - target) *
// grad_scale (0 for ignored rows). dlogits may alias logits.
void cross_entropy(Tensor& loss, Tensor* dlogits, const Tensor& logits, const Tensor& labels, float smoothing,
                   int32_t ignore_index, float grad_scale);

}  // namespace ops

}  // namespace tformer
