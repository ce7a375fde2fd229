// Op family dropout: inverted dropout with a counter-based mask.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// Inverted dropout: out[i] = keep(i) ? x[i] / (1 - p) : 0, where keep(i) is
// uniform(seed, offset + i) >= p for a counter-based uniform: the mask depends on
// nothing else, so the backward regenerates it. p in [0, 1] (1 drops everything);
// out may alias x.
struct DropoutParams {
  static constexpr char op_name[] = "dropout";
  DType dtype = DType::f32;
  int64_t n = 0;
  float p = 0.0f;
  uint64_t seed = 0, offset = 0;
  void* out = nullptr;
  const void* x = nullptr;
};

namespace ops {

// Inverted dropout with a counter-based mask: element i is kept with probability 1 - p
// depending only on (seed, offset + i), so the backward regenerates it by calling
// dropout on the gradient with the same seed and offset. out may alias x.
void dropout(Tensor& out, const Tensor& x, float p, uint64_t seed, uint64_t offset);

}  // namespace ops

}  // namespace tformer
