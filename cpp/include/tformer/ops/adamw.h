// Op family adamw: the AdamW optimizer step.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// One step of torch.optim.AdamW on n float32 elements (torch's order of operations):
//   g = grad * grad_scale;  param *= 1 - lr * weight_decay;
//   m += (1 - beta1) * (g - m);  v = beta2 * v + (1 - beta2) * g * g;
//   param -= (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
// The hyperparameters are doubles (torch's Python floats); each scalar factor is
// computed in double and rounded to float once, as torch does.
// param_half (optional, n elements of half_dtype, f16 or bf16): also receives the updated
// param rounded to nearest (mixed precision: param is the float32 master copy, param_half
// the model's weights). CUDA only: the CPU backend rejects it.
struct AdamWParams {
  static constexpr char op_name[] = "adamw";
  int64_t n = 0;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;
  float grad_scale = 1.0f;
  float* param = nullptr;
  const float* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  void* param_half = nullptr;
  DType half_dtype = DType::bf16;
};

namespace ops {

// AdamW (torch.optim.AdamW): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// param -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * weight_decay * param.
// The hyperparameters are doubles, like torch's Python floats: 1 - beta2 of the float
// 0.999f is 1.3e-5 away from 0.001, which moved v by that much against torch.
struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;        // 1-based, for the bias corrections
  float grad_scale = 1.0f; // multiplies g first (gradient clipping, loss scaling)
};
// param_half (optional, float16/bfloat16 like param, CUDA only): also receives the updated
// param rounded to its dtype (param is then a float32 master copy of it).
void adamw(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWOptions& opt,
           Tensor* param_half = nullptr);

}  // namespace ops

}  // namespace tformer
