// The device backend interface. One Backend object per device kind; ops.cpp checks
// arguments on Tensors, then calls the backend with a plain params struct of raw
// pointers and sizes. The CUDA backend lives in its own shared library
// (libtformer_cuda.so) that is loaded with dlopen the first time a CUDA device is
// asked for, so `import tformer` on a machine without CUDA never touches CUDA
// libraries. This header (and dtype.h) is all that library sees of the core.
//
// Conventions: all matrices are row-major; strides are in elements; every pointer
// points to memory of the backend's device unless said otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "tformer/dtype.h"

namespace tformer {

enum class Activation : int32_t { none = 0, relu = 1, gelu = 2, gelu_tanh = 3, silu = 4 };

// C(m, n) = alpha * op(A) @ op(B) + beta * C, row-major, fp32 accumulation.
// op(A) is (m, k): A is stored (m, k) with row stride lda, or (k, m) when trans_a.
// op(B) is (k, n): B is stored (k, n) with row stride ldb, or (n, k) when trans_b.
// c_f32: C is float32 whatever dtype is (mixed precision: dW = dY^T X of f16/bf16
// activations accumulating into float32 gradients); CUDA only, the CPU is all-f32.
// (A flag rather than a C dtype, so that a caller that never heard of it keeps C in dtype.)
struct GemmParams {
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

// out[r, c] = act(x[r, c] + bias[c]) + residual[r, c]   (bias, residual optional).
// out may alias x or residual.
struct BiasActParams {
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  Activation act = Activation::none;
  void* out = nullptr;
  const void* x = nullptr;
  const void* bias = nullptr;      // (cols) or null
  const void* residual = nullptr;  // (rows, cols) or null
};

// s = x + bias + residual (bias, residual optional);
// out = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta, per row;
// sum_out = s when not null (the pre-norm residual stream). out may alias x.
// Training: mean_out / rstd_out (float32 (rows), optional) receive each row's mean(s)
// and 1 / sqrt(var(s) + eps) for the backward; see Backend::saves_training_stats.
struct LayerNormParams {
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  float eps = 1e-5f;
  void* out = nullptr;
  void* sum_out = nullptr;
  const void* x = nullptr;
  const void* bias = nullptr;      // (cols) or null
  const void* residual = nullptr;  // (rows, cols) or null
  const void* gamma = nullptr;     // (cols)
  const void* beta = nullptr;      // (cols)
  float* mean_out = nullptr;       // (rows) or null
  float* rstd_out = nullptr;       // (rows) or null
  // RMSNorm (T5): out = s / sqrt(mean(s^2) + eps) * gamma, no mean subtracted; beta must be
  // null; rstd_out receives 1 / sqrt(mean(s^2) + eps), mean_out (if given) 0.
  bool rms = false;
};

// out[r, :] = table[ids[r], :] * scale + positions[position_ids[r], :]
// (positions optional). Ids are checked on the host before the call.
struct EmbeddingParams {
  DType dtype = DType::f32;  // of table, positions and out
  int64_t rows = 0, dim = 0;
  float scale = 1.0f;
  void* out = nullptr;
  const int32_t* ids = nullptr;           // (rows)
  const void* table = nullptr;            // (vocab, dim)
  const int32_t* position_ids = nullptr;  // (rows) or null
  const void* positions = nullptr;        // (max_positions, dim) or null
};

// Fused multi-head attention, one pass with an online softmax (no L x L buffer):
//   out[b, i, h*D:(h+1)*D] = softmax_j(scale * q_i . k_j  masked) @ v_j
// Head h of a row lives at column offset h * head_dim; rows of q/k/v/out may be
// slices of a wider buffer (the fused QKV projection), hence the explicit strides.
// Key j of batch b is masked when j >= kv_lengths[b / kv_group] (kv_lengths may be
// null), or when causal and j > i + causal_offset.
// kv_group: query batch b reads key/value batch b / kv_group (beams of one sentence
// share its encoder K/V in cross-attention); k/v batch strides count kv batches.
// weights_out (optional, float32 (batch, q_len, kv_len) whatever dtype is): the
// attention probabilities averaged over heads (alignments); masked keys get 0.
// A query row that sees no key gets a zero output.
// lse_out (optional, float32 (batch, heads, q_len), training): the natural log of each
// row's softmax normaliser, log sum_j exp(scale * q_i . k_j) over unmasked keys; -inf
// for a row that sees no key. See Backend::saves_training_stats.
struct AttentionParams {
  DType dtype = DType::f32;
  int64_t batch = 0, heads = 0, head_dim = 0, q_len = 0, kv_len = 0;
  const void* q = nullptr;
  int64_t q_batch_stride = 0, q_row_stride = 0;
  const void* k = nullptr;
  int64_t k_batch_stride = 0, k_row_stride = 0;
  const void* v = nullptr;
  int64_t v_batch_stride = 0, v_row_stride = 0;
  void* out = nullptr;
  int64_t out_batch_stride = 0, out_row_stride = 0;
  const int32_t* kv_lengths = nullptr;  // (batch) or null
  bool causal = false;
  int64_t causal_offset = 0;
  float scale = 1.0f;
  int64_t kv_group = 1;
  float* weights_out = nullptr;
  float* lse_out = nullptr;
  // Relative position bias (T5), optional, of `dtype`, laid out (span, heads): added to the
  // scaled score of query row i and key j of every batch,
  //   score(b, h, i, j) = scale * q_i . k_j + rel_bias[(rel_bias_origin + j - i) * heads + h].
  // The caller folds causal_offset into the origin and guarantees 0 <= rel_bias_origin + j - i
  // < rel_bias_span for every key that is not masked (masked keys are never read).
  const void* rel_bias = nullptr;
  int64_t rel_bias_origin = 0;
  int64_t rel_bias_span = 0;
};

// Gated activation (T5 v1.1 / flan-T5's gated-GELU FFN): x is (rows, 2 * cols), the two
// halves of one fused projection; out[r, c] = act(x[r, c]) * x[r, cols + c]. out (rows, cols)
// does not overlap x.
struct GatedActParams {
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  Activation act = Activation::gelu_tanh;
  void* out = nullptr;
  const void* x = nullptr;
};

// In place: row r of `data` receives what row src_rows[r] held before the call
// (src_rows may repeat and need not be a permutation: beam search picks parents).
// src_rows lives in host memory. Rows are row_stride_bytes apart; the first
// bytes_per_row bytes of each row move.
struct GatherRowsParams {
  void* data = nullptr;
  int64_t num_rows = 0;
  int64_t row_stride_bytes = 0;
  int64_t bytes_per_row = 0;
  const int32_t* src_rows = nullptr;
};

// dst row r = src row r (bytes_per_row bytes each), both on the backend's device.
struct Copy2dParams {
  void* dst = nullptr;
  int64_t dst_stride_bytes = 0;
  const void* src = nullptr;
  int64_t src_stride_bytes = 0;
  int64_t rows = 0;
  int64_t bytes_per_row = 0;
};

// dst[i] = (dst dtype) src[i], between float types.
struct CastParams {
  DType src_dtype = DType::f32;
  DType dst_dtype = DType::f32;
  int64_t n = 0;
  const void* src = nullptr;
  void* dst = nullptr;
};

// ---------------------------------------------------------------- training kernels
// Gradient rule (llm.c's): gradients of parameters accumulate (+=); gradients of
// activations are written (=) unless a flag says to add. Float32 statistics (mean, rstd,
// lse, loss) are float32 whatever `dtype` is.

// Backward of out = (s - mean) * rstd * gamma + beta, per row, from the saved s, mean
// and rstd: ds = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * gamma and
// xhat = (s - mean) * rstd, written (or added when accumulate); dgamma += sum over rows
// of dout * xhat; dbeta += sum over rows of dout (either may be null). ds may alias dout.
// grad_f32: dgamma and dbeta are float32 whatever dtype is (mixed precision; CUDA only).
struct LayerNormBackwardParams {
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  bool accumulate = false;
  bool grad_f32 = false;
  void* ds = nullptr;            // (rows, cols)
  void* dgamma = nullptr;        // (cols) or null
  void* dbeta = nullptr;         // (cols) or null
  const void* dout = nullptr;    // (rows, cols)
  const void* s = nullptr;       // (rows, cols)
  const float* mean = nullptr;   // (rows)
  const float* rstd = nullptr;   // (rows)
  const void* gamma = nullptr;   // (cols)
  // RMSNorm's backward: xhat = s * rstd, ds = rstd * (g - xhat * mean(g * xhat)); mean is
  // ignored (may be null) and dbeta must be null.
  bool rms = false;
};

// bias_act's backward: dz[i] = dy[i] * act'(z[i]) for n elements (the bias gradient is
// sum_rows of dz, the residual's is dy itself); dz may alias dy.
struct BiasActBackwardParams {
  DType dtype = DType::f32;
  int64_t n = 0;
  Activation act = Activation::none;
  void* dz = nullptr;
  const void* dy = nullptr;
  const void* z = nullptr;
};

// gated_act's backward, from the forward's input x (rows, 2 * cols): dx[r, c] =
// dy[r, c] * x[r, cols + c] * act'(x[r, c]) and dx[r, cols + c] = dy[r, c] * act(x[r, c]),
// written. dx (rows, 2 * cols) does not overlap dy or x.
struct GatedActBackwardParams {
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  Activation act = Activation::gelu_tanh;
  void* dx = nullptr;
  const void* dy = nullptr;  // (rows, cols)
  const void* x = nullptr;   // (rows, 2 * cols)
};

// out[c] += sum over r of x[r, c] (a bias gradient). grad_f32: out is float32 whatever
// dtype (of x) is (mixed precision; CUDA only).
struct SumRowsParams {
  DType dtype = DType::f32;
  bool grad_f32 = false;
  int64_t rows = 0, cols = 0;
  void* out = nullptr;      // (cols)
  const void* x = nullptr;  // (rows, cols)
};

// Gradients of fused attention (FlashAttention-2's backward): the probabilities are
// recomputed tile by tile as P = exp(scale * q . k - lse), then dV = P^T dO,
// dP = dO V^T, dS = P * (dP - rowsum(dO * O)), dQ = scale * dS K, dK = scale * dS^T Q.
// `fwd` describes the forward call (q, k, v, its output `out` (read only here), masks,
// scale; kv_group 1). dq/dk/dv are written, never added; they are column blocks laid out
// like q/k/v (possibly of one fused buffer) and must not overlap the inputs.
struct AttentionBackwardParams {
  AttentionParams fwd;
  const void* dout = nullptr;  // like fwd.out
  int64_t dout_batch_stride = 0, dout_row_stride = 0;
  const float* lse = nullptr;  // (batch, heads, q_len), from the forward's lse_out
  void* dq = nullptr;
  int64_t dq_batch_stride = 0, dq_row_stride = 0;
  void* dk = nullptr;
  int64_t dk_batch_stride = 0, dk_row_stride = 0;
  void* dv = nullptr;
  int64_t dv_batch_stride = 0, dv_row_stride = 0;
  // With fwd.rel_bias: float32 (fwd.rel_bias_span, heads), ACCUMULATED (+=): the sum of dS
  // over every (batch, i, j) that reads the entry. Null: not wanted.
  float* drel_bias = nullptr;
};

// Backward of the embedding lookup: dtable[ids[r], :] += scale * dout[r, :] and
// dpositions[position_ids[r], :] += dout[r, :] (dtable, dpositions optional), skipping
// the rows whose id is skip_id. Ids are checked on the host before the call.
// grad_f32: dtable and dpositions are float32 whatever dtype (of dout) is (mixed
// precision; CUDA only).
struct EmbeddingBackwardParams {
  DType dtype = DType::f32;
  bool grad_f32 = false;
  int64_t rows = 0, dim = 0;
  float scale = 1.0f;
  int32_t skip_id = -1;
  void* dtable = nullptr;                 // (vocab, dim) or null
  void* dpositions = nullptr;             // (max_positions, dim) or null
  const void* dout = nullptr;             // (rows, dim)
  const int32_t* ids = nullptr;           // (rows)
  const int32_t* position_ids = nullptr;  // (rows), with dpositions
};

// Per row, torch's cross_entropy with label smoothing eps over V classes:
//   loss = (1 - eps) * (lse - x[label]) + eps * (lse - mean(x)),  lse = log sum exp x;
//   dlogits = (softmax(x) - (1 - eps) * onehot(label) - eps / V) * grad_scale.
// Rows whose label is ignore_index get loss 0 and a zero gradient. dlogits (optional)
// may alias logits. Labels are checked on the host before the call.
struct CrossEntropyParams {
  DType dtype = DType::f32;  // of logits and dlogits
  int64_t rows = 0, vocab = 0;
  float smoothing = 0.0f;
  int32_t ignore_index = -100;
  float grad_scale = 1.0f;
  float* loss = nullptr;          // (rows)
  void* dlogits = nullptr;        // (rows, vocab) or null
  const void* logits = nullptr;   // (rows, vocab)
  const int32_t* labels = nullptr;  // (rows)
};

// Inverted dropout: out[i] = keep(i) ? x[i] / (1 - p) : 0, where keep(i) is
// uniform(seed, offset + i) >= p for a counter-based uniform: the mask depends on
// nothing else, so the backward regenerates it. p in [0, 1] (1 drops everything);
// out may alias x.
struct DropoutParams {
  DType dtype = DType::f32;
  int64_t n = 0;
  float p = 0.0f;
  uint64_t seed = 0, offset = 0;
  void* out = nullptr;
  const void* x = nullptr;
};

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

// Sum of x[i]^2 over n elements, accumulated in double (gradient-norm clipping).
struct SumSquaresParams {
  DType dtype = DType::f32;
  int64_t n = 0;
  const void* x = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual DeviceType type() const = 0;
  virtual std::string name() const = 0;        // e.g. "cpu (OpenBLAS 0.3.x, 2 threads)"
  virtual int device_count() const = 0;

  // Memory. allocate() never returns null: it throws std::runtime_error (or
  // std::bad_alloc) naming the size when the device is out of memory.
  virtual void* allocate(size_t bytes, int device_index) = 0;
  virtual void deallocate(void* ptr, size_t bytes, int device_index) = 0;
  virtual void empty_cache() = 0;  // returns cached blocks to the device
  virtual void copy_from_host(void* dst, const void* src, size_t bytes, int device_index) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes, int device_index) = 0;
  virtual void copy_on_device(void* dst, const void* src, size_t bytes, int device_index) = 0;
  virtual void fill_zero(void* dst, size_t bytes, int device_index) = 0;
  virtual void synchronize(int device_index) = 0;

  // Kernels. They run on device_index's current stream; inputs are already checked.
  // A model may be used from several host threads at once: a backend serialises or
  // separates whatever per-device state (streams, library handles) is not thread-safe.
  virtual void gemm(const GemmParams& p, int device_index) = 0;
  virtual void bias_act(const BiasActParams& p, int device_index) = 0;
  virtual void layer_norm(const LayerNormParams& p, int device_index) = 0;
  virtual void embedding(const EmbeddingParams& p, int device_index) = 0;
  virtual void attention(const AttentionParams& p, int device_index) = 0;
  virtual void cast(const CastParams& p, int device_index) = 0;
  virtual void gather_rows(const GatherRowsParams& p, int device_index) = 0;
  virtual void copy_2d(const Copy2dParams& p, int device_index) = 0;
  virtual void gated_act(const GatedActParams& p, int device_index) { not_implemented("gated_act"); }

  // Training kernels. Each has a default that throws, so a backend compiles before it
  // implements them; ops check saves_training_stats() before relying on mean_out,
  // rstd_out (layer_norm) or lse_out (attention), which an older backend ignores.
  virtual bool saves_training_stats() const { return false; }
  virtual void layer_norm_backward(const LayerNormBackwardParams& p, int device_index) {
    not_implemented("layer_norm_backward");
  }
  virtual void bias_act_backward(const BiasActBackwardParams& p, int device_index) {
    not_implemented("bias_act_backward");
  }
  virtual void gated_act_backward(const GatedActBackwardParams& p, int device_index) {
    not_implemented("gated_act_backward");
  }
  virtual void sum_rows(const SumRowsParams& p, int device_index) { not_implemented("sum_rows"); }
  virtual void attention_backward(const AttentionBackwardParams& p, int device_index) {
    not_implemented("attention_backward");
  }
  virtual void embedding_backward(const EmbeddingBackwardParams& p, int device_index) {
    not_implemented("embedding_backward");
  }
  virtual void cross_entropy(const CrossEntropyParams& p, int device_index) { not_implemented("cross_entropy"); }
  virtual void dropout(const DropoutParams& p, int device_index) { not_implemented("dropout"); }
  virtual void adamw(const AdamWParams& p, int device_index) { not_implemented("adamw"); }
  virtual double sum_squares(const SumSquaresParams& p, int device_index) {
    not_implemented("sum_squares");
  }

 protected:
  [[noreturn]] void not_implemented(const char* op) const {
    const char* device = type() == DeviceType::cuda ? "cuda" : "cpu";
    throw std::runtime_error(std::string(op) + " is not implemented on " + device + " yet");
  }
};

}  // namespace tformer

// The CUDA backend library exports this C entry point. It returns a new backend, or
// null with a message in `error` (of size error_size) when no usable GPU is found.
extern "C" {
typedef tformer::Backend* (*tformer_backend_factory_fn)(char* error, size_t error_size);
}
#define TFORMER_CUDA_BACKEND_SYMBOL "tformer_cuda_backend_create"
