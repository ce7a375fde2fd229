// Op family cast: conversions between float dtypes (Tensor::to_dtype).
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// dst[i] = (dst dtype) src[i], between float types.
struct CastParams {
  static constexpr char op_name[] = "cast";
  DType src_dtype = DType::f32;
  DType dst_dtype = DType::f32;
  int64_t n = 0;
  const void* src = nullptr;
  void* dst = nullptr;
};

}  // namespace tformer
