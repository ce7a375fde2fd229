// Op family bias_act: bias + activation + residual, fused, and its backward.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/ops/activation.h"

namespace tformer {

class Tensor;

// out[r, c] = act(x[r, c] + bias[c]) + residual[r, c]   (bias, residual optional).
// out may alias x or residual.
struct BiasActParams {
  static constexpr char op_name[] = "bias_act";
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  Activation act = Activation::none;
  void* out = nullptr;
  const void* x = nullptr;
  const void* bias = nullptr;      // (cols) or null
  const void* residual = nullptr;  // (rows, cols) or null
};

// bias_act's backward: dz[i] = dy[i] * act'(z[i]) for n elements (the bias gradient is
// sum_rows of dz, the residual's is dy itself); dz may alias dy.
struct BiasActBackwardParams {
  static constexpr char op_name[] = "bias_act_backward";
  DType dtype = DType::f32;
  int64_t n = 0;
  Activation act = Activation::none;
  void* dz = nullptr;
  const void* dy = nullptr;
  const void* z = nullptr;
};

namespace ops {

// out = act(x + bias) + residual; x, out (..., cols), bias (cols).
void bias_act(Tensor& out, const Tensor& x, const Tensor* bias, const Tensor* residual, Activation act);


// Forward y = act(z) (z = x + bias, kept by the caller): dz = dy * act'(z). dz may alias dy.
void bias_act_backward(Tensor& dz, const Tensor& dy, const Tensor& z, Activation act);

}  // namespace ops

}  // namespace tformer
