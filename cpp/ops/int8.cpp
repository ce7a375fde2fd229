// The int8 op family (tformer/ops/int8.h): the host quantization of weight matrices, and
// the checks + dispatch of int8_linear. The GEMM kernels live in cpp/ops/int8/.
#include "tformer/ops/int8.h"

#include <cmath>

#include "op_checks.h"
#include "tformer/profile.h"

namespace tformer::ops {

using namespace checks;

namespace {

void host_matrix(const char* op, const char* what, const Tensor& t, DType dtype) {
  if (t.ndim() != 2) throw_value_error(op, ": ", what, " must be 2-D, got ", shape_str(t.shape()));
  dtype_is(op, what, t, dtype);
  if (!t.device().is_cpu()) throw_value_error(op, ": ", what, " must be on the host, got ", device_name(t.device()));
}

// The float matrix x, its int8 image q and q's per-row scales, as both conversions take them.
void host_rows(const char* op, const Tensor& x, const Tensor& q, const Tensor& scale) {
  host_matrix(op, "x", x, DType::f32);
  host_matrix(op, "q", q, DType::i8);
  shape_is(op, "q", q, x.shape());
  dtype_is(op, "scale", scale, DType::f32);
  shape_is(op, "scale", scale, {x.dim(0)});
}

}  // namespace

void quantize_rows(Tensor& q, Tensor& scale, const Tensor& x) {
  host_rows("quantize_rows", x, q, scale);
  const int64_t rows = x.dim(0), cols = x.dim(1);
  const float* xs = x.data<float>();
  int8_t* qs = q.data<int8_t>();
  float* ss = scale.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = xs + r * cols;
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      if (!std::isfinite(row[c]))
        throw_value_error("quantize_rows: row ", r, " holds ", std::isnan(row[c]) ? "NaN" : "Inf", " at column ", c);
      amax = std::max(amax, std::fabs(row[c]));
    }
    int8_t* out = qs + r * cols;
    if (amax == 0.0f) {
      for (int64_t c = 0; c < cols; ++c) out[c] = 0;
      ss[r] = 0.0f;
      continue;
    }
    const float inv = 127.0f / amax;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::nearbyint(row[c] * inv);
      out[c] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, v)));
    }
    ss[r] = amax / 127.0f;
  }
}

void dequantize_rows(Tensor& x, const Tensor& q, const Tensor& scale) {
  host_rows("dequantize_rows", x, q, scale);
  const int64_t rows = q.dim(0), cols = q.dim(1);
  const int8_t* qs = q.data<int8_t>();
  const float* ss = scale.data<float>();
  float* xs = x.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) xs[r * cols + c] = static_cast<float>(qs[r * cols + c]) * ss[r];
}

void int8_linear(Tensor& out, const Tensor& x, const Tensor& q, const Tensor& scale, const Tensor* bias, float alpha) {
  host_matrix("int8_linear", "weight", q, DType::i8);
  const int64_t n = q.dim(0), k = q.dim(1);
  if (k > kInt8GemmMaxK)
    throw_value_error("int8_linear: ", k, " input features; int8 weights allow at most ", kInt8GemmMaxK,
                      " (the int32 sums would overflow)");
  dtype_is("int8_linear", "x", x, DType::f32);
  if (x.ndim() < 1 || x.dim(-1) != k)
    throw_value_error("int8_linear: input must end with ", k, " features, got ", shape_str(x.shape()));
  dtype_is("int8_linear", "out", out, DType::f32);
  if (out.ndim() < 1 || out.dim(-1) != n || rows_of(out) != rows_of(x))
    throw_value_error("int8_linear: output must be (", rows_of(x), ", ", n, "), got ", shape_str(out.shape()));
  dtype_is("int8_linear", "weight_scale", scale, DType::f32);
  shape_is("int8_linear", "weight_scale", scale, {n});
  if (bias) vector_of("int8_linear", "bias", *bias, n, x);
  same_device("int8_linear", "x", x, q);
  same_device("int8_linear", "out", out, q);
  same_device("int8_linear", "weight_scale", scale, q);
  Int8GemmParams p;
  p.m = rows_of(x);
  p.n = n;
  p.k = k;
  p.a = x.data<float>();
  p.lda = k;
  p.b = q.data<int8_t>();
  p.ldb = k;
  p.b_scale = scale.data<float>();
  p.bias = bias ? bias->data<float>() : nullptr;
  p.alpha = alpha;
  p.c = out.data<float>();
  p.ldc = n;
  if (p.m == 0 || p.n == 0) return;
  profile::Scope profiling("int8_gemm");
  backend_for(q.device()).run(p, q.device().index);
}

}  // namespace tformer::ops
