// The scalar factors of one AdamW step (backend.h's AdamWParams), computed in double and
// rounded to float once, as torch does with its Python floats. One definition for the CPU
// and CUDA kernels, so both round the same factors.
#pragma once

#include <cmath>

#include "tformer/ops/adamw.h"

namespace tformer {

struct AdamWFactors {
  float gs, decay, w1, one_minus_w1, b2, w2, step_size, bc2_sqrt, eps;
  bool decayed, small_w1;  // small_w1: torch's lerp takes its |weight| < 0.5 form
};

inline AdamWFactors adamw_factors(const AdamWParams& p) {
  const double step = static_cast<double>(p.step);
  AdamWFactors f;
  f.gs = p.grad_scale;
  f.decayed = p.weight_decay != 0.0;
  f.decay = static_cast<float>(1.0 - p.lr * p.weight_decay);
  f.w1 = static_cast<float>(1.0 - p.beta1);  // lerp weight
  f.small_w1 = std::fabs(f.w1) < 0.5f;
  f.one_minus_w1 = 1.0f - f.w1;
  f.b2 = static_cast<float>(p.beta2);
  f.w2 = static_cast<float>(1.0 - p.beta2);
  f.step_size = static_cast<float>(p.lr / (1.0 - std::pow(p.beta1, step)));
  f.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(p.beta2, step)));
  f.eps = static_cast<float>(p.eps);
  return f;
}

}  // namespace tformer
