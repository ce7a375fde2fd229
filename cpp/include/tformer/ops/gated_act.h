// Op family gated_act: gated activations (T5's gated-GELU FFN), forward and backward.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/ops/activation.h"

namespace tformer {

class Tensor;

// Gated activation (T5 v1.1 / flan-T5's gated-GELU FFN): x is (rows, 2 * cols), the two
// halves of one fused projection; out[r, c] = act(x[r, c]) * x[r, cols + c]. out (rows, cols)
// does not overlap x.
struct GatedActParams {
  static constexpr char op_name[] = "gated_act";
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  Activation act = Activation::gelu_tanh;
  void* out = nullptr;
  const void* x = nullptr;
};

// gated_act's backward, from the forward's input x (rows, 2 * cols): dx[r, c] =
// dy[r, c] * x[r, cols + c] * act'(x[r, c]) and dx[r, cols + c] = dy[r, c] * act(x[r, c]),
// written. dx (rows, 2 * cols) does not overlap dy or x.
struct GatedActBackwardParams {
  static constexpr char op_name[] = "gated_act_backward";
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  Activation act = Activation::gelu_tanh;
  void* dx = nullptr;
  const void* dy = nullptr;  // (rows, cols)
  const void* x = nullptr;   // (rows, 2 * cols)
};

namespace ops {

// out (..., cols) = act(x[..., :cols]) * x[..., cols:]; x (..., 2 * cols) (gated FFNs).
void gated_act(Tensor& out, const Tensor& x, Activation act);

// Backward of gated_act: dx (..., 2 * cols) written from dy (..., cols) and the forward's x.
void gated_act_backward(Tensor& dx, const Tensor& dy, const Tensor& x, Activation act);

}  // namespace ops

}  // namespace tformer
