// Argument checks shared by every op (ops.cpp, train_ops.cpp, train_attention.cpp):
// each names the op and the argument, and gives the expected and actual values.
#pragma once

#include "tformer/backends.h"
#include "tformer/errors.h"
#include "tformer/ops.h"
#include "tformer/tensor.h"

namespace tformer::ops::checks {

inline void same_device(const char* op, const char* what, const Tensor& t, const Tensor& like) {
  if (t.device() != like.device())
    throw_value_error(op, ": ", what, " is on ", device_name(t.device()), ", expected ", device_name(like.device()));
}

inline void dtype_is(const char* op, const char* what, const Tensor& t, DType dtype) {
  if (t.dtype() != dtype) throw_type_error(op, ": ", what, " must be ", dtype_name(dtype), ", got ", t.describe());
}

inline void shape_is(const char* op, const char* what, const Tensor& t, const Shape& shape) {
  if (t.shape() != shape)
    throw_value_error(op, ": ", what, " must have shape ", shape_str(shape), ", got ", shape_str(t.shape()));
}

// Same shape, dtype and device as `like`.
inline void like(const char* op, const char* what, const Tensor& t, const Tensor& like, const char* like_name) {
  if (t.shape() != like.shape())
    throw_value_error(op, ": ", what, " must have the shape of ", like_name, " ", shape_str(like.shape()), ", got ",
                      shape_str(t.shape()));
  dtype_is(op, what, t, like.dtype());
  same_device(op, what, t, like);
}

// A (n,) vector of like's dtype on like's device.
inline void vector_of(const char* op, const char* what, const Tensor& t, int64_t n, const Tensor& like) {
  shape_is(op, what, t, {n});
  dtype_is(op, what, t, like.dtype());
  same_device(op, what, t, like);
}

// The output (or gradient) `t` of half-precision inputs like `like`: like's dtype, or float32
// on a GPU (mixed precision: products and gradients accumulate in float32). Returns whether
// it is such a float32 output.
inline bool dtype_or_f32_of(const char* op, const char* what, const Tensor& t, const Tensor& like) {
  if (t.dtype() == DType::f32 && like.dtype() != DType::f32) {
    if (like.device().is_cpu())
      throw_type_error(op, ": a float32 ", what, " of ", dtype_name(like.dtype()), " values is CUDA only");
    return true;
  }
  dtype_is(op, what, t, like.dtype());
  return false;
}

// The training ops need the saved statistics (layer norm mean/rstd, attention lse).
inline void saves_stats(const char* op, const Tensor& t) {
  if (!backend_for(t.device()).saves_training_stats())
    throw_runtime_error(op, " is not implemented on ", device_name(t.device()), " yet");
}

// A host copy of an int32 tensor (a view when it is on the host already).
inline Tensor on_host(const Tensor& t) { return t.device().is_cpu() ? t : t.to(Device{}); }

}  // namespace tformer::ops::checks

namespace tformer::ops {

// Checks the arguments of an attention call (ops.cpp) and describes them as the kernel's
// params; shared by ops::attention and the training ops, which add their own outputs.
AttentionParams attention_params(const char* op, const Tensor& out, HeadsView q, HeadsView k, HeadsView v,
                                 const AttentionOptions& opt);

}  // namespace tformer::ops
