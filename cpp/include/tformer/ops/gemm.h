// Op family gemm: the GEMM (OpenBLAS / cuBLAS) and the linear layer built on it.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// C(m, n) = alpha * op(A) @ op(B) + beta * C, row-major, fp32 accumulation.
// op(A) is (m, k): A is stored (m, k) with row stride lda, or (k, m) when trans_a.
// op(B) is (k, n): B is stored (k, n) with row stride ldb, or (n, k) when trans_b.
// c_f32: C is float32 whatever dtype is (mixed precision: dW = dY^T X of f16/bf16
// activations accumulating into float32 gradients); CUDA only, the CPU is all-f32.
// (A flag rather than a C dtype, so that a caller that never heard of it keeps C in dtype.)
struct GemmParams {
  static constexpr char op_name[] = "gemm";
  DType dtype = DType::f32;  // of A and B, and of C unless c_f32
  bool c_f32 = false;
  bool trans_a = false;
  bool trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* c = nullptr;
  int64_t ldc = 0;
};

namespace ops {

// c = alpha * op(a) @ op(b) + beta * c; all 2-D. c has a's dtype, or float32 with
// float16/bfloat16 a and b (mixed-precision gradients; CUDA only).
void gemm(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false,
          float alpha = 1.0f, float beta = 0.0f);

// out = x @ weight^T + bias; x (..., in), weight (out_features, in), out (..., out_features).
void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias = nullptr);

// y = x @ weight^T + bias, x (rows, in), weight (out, in):
//   dx = dy @ weight (written, or added when accumulate_dx), dweight += dy^T @ x,
//   dbias += sum over rows of dy. Any of dx / dweight / dbias may be null.
// dweight and dbias have the dtype of weight, or float32 with float16/bfloat16 values on
// a GPU (mixed precision: parameter gradients accumulate in float32).
void linear_backward(Tensor* dx, Tensor* dweight, Tensor* dbias, const Tensor& dy, const Tensor& x,
                     const Tensor& weight, bool accumulate_dx = false);

}  // namespace ops

}  // namespace tformer
