// Op family reduce: bias gradients (sum over rows), the sum of squares (gradient norms).
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// out[c] += sum over r of x[r, c] (a bias gradient). grad_f32: out is float32 whatever
// dtype (of x) is (mixed precision; CUDA only).
struct SumRowsParams {
  static constexpr char op_name[] = "sum_rows";
  DType dtype = DType::f32;
  bool grad_f32 = false;
  int64_t rows = 0, cols = 0;
  void* out = nullptr;      // (cols)
  const void* x = nullptr;  // (rows, cols)
};

// Sum of x[i]^2 over n elements, accumulated in double (gradient-norm clipping).
struct SumSquaresParams {
  static constexpr char op_name[] = "sum_squares";
  using Result = double;
  DType dtype = DType::f32;
  int64_t n = 0;
  const void* x = nullptr;
};

namespace ops {

// dbias (cols) += sum over rows of dy (rows, cols).
void sum_rows(Tensor& dbias, const Tensor& dy);

// Sum of squares of all elements, accumulated in double, returned on the host.
double sum_squares(const Tensor& t);

}  // namespace ops

}  // namespace tformer
