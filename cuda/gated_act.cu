// gated_act, forward and backward (the gated FFN of T5 v1.1 / flan-T5 / mT5), elementwise
// in fp32, one thread per output element (grid-stride); x (rows, 2 * cols) holds the two
// halves of one fused projection, a = x[r, c] and gate = x[r, cols + c]:
//   forward:  out[r, c] = act(a) * gate;
//   backward: dx[r, c] = dy[r, c] * gate * act'(a),  dx[r, cols + c] = dy[r, c] * act(a).
// A thread reads both halves of its element and writes its own outputs, so no barrier is
// needed; out / dx never overlap x (backend.h).
#include <algorithm>
#include <stdexcept>
#include <string>

#include "activation.cuh"
#include "cuda_check.h"
#include "dtype_convert.cuh"
#include "grid_stride.h"
#include "ops.h"
#include "tformer/ops/gated_act.h"

namespace tformer::cuda {

namespace {

constexpr int kGatedThreads = 256;

}  // namespace

// ---------------------------------------------------------------- kernels

template <typename T, Activation A>
__global__ void __launch_bounds__(kGatedThreads) gated_act_kernel(const GatedActParams p) {
  T* out = static_cast<T*>(p.out);
  const T* x = static_cast<const T*>(p.x);
  const int64_t total = p.rows * p.cols;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / p.cols, c = idx - r * p.cols;
    const T* xr = x + r * 2 * p.cols;
    out[idx] = from_float<T>(activate<A>(to_float(xr[c])) * to_float(xr[p.cols + c]));
  }
}

template <typename T, Activation A>
__global__ void __launch_bounds__(kGatedThreads) gated_act_backward_kernel(const GatedActBackwardParams p) {
  T* dx = static_cast<T*>(p.dx);
  const T* dy = static_cast<const T*>(p.dy);
  const T* x = static_cast<const T*>(p.x);
  const int64_t total = p.rows * p.cols;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / p.cols, c = idx - r * p.cols;
    const int64_t a_at = r * 2 * p.cols + c, gate_at = a_at + p.cols;
    const float a = to_float(x[a_at]), gate = to_float(x[gate_at]), g = to_float(dy[idx]);
    dx[a_at] = from_float<T>(g * gate * activation_grad<A>(a));
    dx[gate_at] = from_float<T>(g * activate<A>(a));
  }
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename T, Activation A>
void launch_gated_act(const GatedActParams& p, cudaStream_t stream) {
  gated_act_kernel<T, A><<<grid_stride_blocks(p.rows * p.cols, kGatedThreads), kGatedThreads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("gated_act_kernel");
}

template <typename T, Activation A>
void launch_gated_act_backward(const GatedActBackwardParams& p, cudaStream_t stream) {
  gated_act_backward_kernel<T, A><<<grid_stride_blocks(p.rows * p.cols, kGatedThreads), kGatedThreads, 0, stream>>>(p);
  TFORMER_CUDA_CHECK_LAUNCH("gated_act_backward_kernel");
}

// The activation as a template argument: F<A>::run(p, stream) for p.act.
template <typename T, template <typename, Activation> class F, typename Params>
void dispatch_act(const char* op, const Params& p, cudaStream_t stream) {
  switch (p.act) {
    case Activation::none: return F<T, Activation::none>::run(p, stream);
    case Activation::relu: return F<T, Activation::relu>::run(p, stream);
    case Activation::gelu: return F<T, Activation::gelu>::run(p, stream);
    case Activation::gelu_tanh: return F<T, Activation::gelu_tanh>::run(p, stream);
    case Activation::silu: return F<T, Activation::silu>::run(p, stream);
  }
  throw std::invalid_argument(std::string("cuda ") + op + ": unknown activation " +
                              std::to_string(static_cast<int>(p.act)));
}

template <typename T, Activation A>
struct Forward {
  static void run(const GatedActParams& p, cudaStream_t stream) { launch_gated_act<T, A>(p, stream); }
};
template <typename T, Activation A>
struct Backward {
  static void run(const GatedActBackwardParams& p, cudaStream_t stream) { launch_gated_act_backward<T, A>(p, stream); }
};

template <template <typename, Activation> class F, typename Params>
void dispatch(const char* op, const Params& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.cols <= 0) return;
  switch (p.dtype) {
    case DType::f32: return dispatch_act<float, F>(op, p, stream);
    case DType::f16: return dispatch_act<__half, F>(op, p, stream);
    case DType::bf16: return dispatch_act<__nv_bfloat16, F>(op, p, stream);
    default: throw_unsupported_dtype(op, p.dtype);
  }
}

}  // namespace

void gated_act(const GatedActParams& p, cudaStream_t stream) { dispatch<Forward>("gated_act", p, stream); }

void gated_act_backward(const GatedActBackwardParams& p, cudaStream_t stream) {
  dispatch<Backward>("gated_act_backward", p, stream);
}

TFORMER_CUDA_OP(gated_act);
TFORMER_CUDA_OP(gated_act_backward);

}  // namespace tformer::cuda
