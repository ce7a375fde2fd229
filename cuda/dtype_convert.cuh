// Storage types of the float dtypes and their conversions to and from the fp32 that
// every kernel computes in. Kernels are templates over the storage type T and are
// instantiated for exactly float, __half and __nv_bfloat16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

#include "tformer/dtype.h"

namespace tformer::cuda {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// For the default branch of a launcher's dtype switch.
[[noreturn]] inline void throw_unsupported_dtype(const char* op, DType dtype) {
  throw std::invalid_argument(std::string("cuda ") + op + ": dtype " + dtype_name(dtype) +
                              " is not supported (float32, float16 and bfloat16 are)");
}

}  // namespace tformer::cuda
