// Op family layer_norm: LayerNorm and RMSNorm (with the bias and residual adds), forward and backward.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// s = x + bias + residual (bias, residual optional);
// out = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta, per row;
// sum_out = s when not null (the pre-norm residual stream). out may alias x.
// Training: mean_out / rstd_out (float32 (rows), optional) receive each row's mean(s)
// and 1 / sqrt(var(s) + eps) for the backward; see Backend::saves_training_stats.
struct LayerNormParams {
  static constexpr char op_name[] = "layer_norm";
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  float eps = 1e-5f;
  void* out = nullptr;
  void* sum_out = nullptr;
  const void* x = nullptr;
  const void* bias = nullptr;      // (cols) or null
  const void* residual = nullptr;  // (rows, cols) or null
  const void* gamma = nullptr;     // (cols)
  const void* beta = nullptr;      // (cols)
  float* mean_out = nullptr;       // (rows) or null
  float* rstd_out = nullptr;       // (rows) or null
  // RMSNorm (T5): out = s / sqrt(mean(s^2) + eps) * gamma, no mean subtracted; beta must be
  // null; rstd_out receives 1 / sqrt(mean(s^2) + eps), mean_out (if given) 0.
  bool rms = false;
};

// Backward of out = (s - mean) * rstd * gamma + beta, per row, from the saved s, mean
// and rstd: ds = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * gamma and
// xhat = (s - mean) * rstd, written (or added when accumulate); dgamma += sum over rows
// of dout * xhat; dbeta += sum over rows of dout (either may be null). ds may alias dout.
// grad_f32: dgamma and dbeta are float32 whatever dtype is (mixed precision; CUDA only).
struct LayerNormBackwardParams {
  static constexpr char op_name[] = "layer_norm_backward";
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  bool accumulate = false;
  bool grad_f32 = false;
  void* ds = nullptr;            // (rows, cols)
  void* dgamma = nullptr;        // (cols) or null
  void* dbeta = nullptr;         // (cols) or null
  const void* dout = nullptr;    // (rows, cols)
  const void* s = nullptr;       // (rows, cols)
  const float* mean = nullptr;   // (rows)
  const float* rstd = nullptr;   // (rows)
  const void* gamma = nullptr;   // (cols)
  // RMSNorm's backward: xhat = s * rstd, ds = rstd * (g - xhat * mean(g * xhat)); mean is
  // ignored (may be null) and dbeta must be null.
  bool rms = false;
};

namespace ops {

// out = LayerNorm(x + bias + residual); sum_out (optional) receives the sum.
void layer_norm(Tensor& out, Tensor* sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
                const Tensor& gamma, const Tensor& beta, float eps);

// RMSNorm (T5): out = s / sqrt(mean(s^2) + eps) * gamma with s = x + bias + residual;
// sum_out (optional) receives s.
void rms_norm(Tensor& out, Tensor* sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
              const Tensor& gamma, float eps);

// Layer norm that also saves, per row, mean and rstd (float32 (rows)) for the backward.
// Same arguments as layer_norm, plus the two outputs.
void layer_norm_train(Tensor& out, Tensor& sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
                      const Tensor& gamma, const Tensor& beta, float eps, Tensor& mean, Tensor& rstd);

// Backward of out = (s - mean) * rstd * gamma + beta, given the saved s, mean, rstd:
// ds = written (or added when accumulate), dgamma += , dbeta += .
void layer_norm_backward(Tensor& ds, Tensor* dgamma, Tensor* dbeta, const Tensor& dout, const Tensor& s,
                         const Tensor& mean, const Tensor& rstd, const Tensor& gamma, bool accumulate = false);

// RMSNorm that also saves each row's rstd = 1 / sqrt(mean(s^2) + eps) (float32 (rows)).
void rms_norm_train(Tensor& out, Tensor& sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
                    const Tensor& gamma, float eps, Tensor& rstd);

// Backward of out = s * rstd * gamma: ds written (or added when accumulate), dgamma +=.
void rms_norm_backward(Tensor& ds, Tensor* dgamma, const Tensor& dout, const Tensor& s, const Tensor& rstd,
                       const Tensor& gamma, bool accumulate = false);

}  // namespace ops

}  // namespace tformer
