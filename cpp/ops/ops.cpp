// Argument checks (op_checks.h) and device dispatch for the ops of ops.h.
#include "tformer/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "tformer/backends.h"
#include "tformer/errors.h"
#include "op_checks.h"
#include "tformer/profile.h"

namespace tformer::ops {

using namespace checks;

void gemm(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha, float beta) {
  if (a.ndim() != 2 || b.ndim() != 2 || c.ndim() != 2)
    throw_value_error("gemm: expected 2-D tensors, got a ", shape_str(a.shape()), ", b ", shape_str(b.shape()),
                      ", c ", shape_str(c.shape()));
  const int64_t m = trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  if (k != kb) throw_value_error("gemm: inner dimensions differ: op(a) is (", m, ", ", k, "), op(b) is (", kb, ", ", n, ")");
  if (c.dim(0) != m || c.dim(1) != n)
    throw_value_error("gemm: c must have shape (", m, ", ", n, "), got ", shape_str(c.shape()));
  dtype_is("gemm", "b", b, a.dtype());
  // Half inputs may write a float32 C (mixed-precision gradients), on CUDA only.
  const bool c_f32 = dtype_or_f32_of("gemm", "c", c, a);
  same_device("gemm", "b", b, a);
  same_device("gemm", "c", c, a);
  GemmParams p;
  p.dtype = a.dtype();
  p.c_f32 = c_f32;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.m = m;
  p.n = n;
  p.k = k;
  p.alpha = alpha;
  p.beta = beta;
  p.a = a.raw();
  p.lda = std::max<int64_t>(a.dim(1), 1);
  p.b = b.raw();
  p.ldb = std::max<int64_t>(b.dim(1), 1);
  p.c = c.raw();
  p.ldc = std::max<int64_t>(n, 1);
  {
    profile::Scope scope("gemm");
    backend_for(a.device()).run(p, a.device().index);
  }
}

void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  if (weight.ndim() != 2) throw_value_error("linear: weight must be 2-D, got ", shape_str(weight.shape()));
  const int64_t in = weight.dim(1), out_features = weight.dim(0);
  if (x.ndim() < 1 || x.dim(-1) != in)
    throw_value_error("linear: input must end with ", in, " features, got ", shape_str(x.shape()));
  if (out.ndim() < 1 || out.dim(-1) != out_features || rows_of(out) != rows_of(x))
    throw_value_error("linear: output must be (", rows_of(x), ", ", out_features, "), got ", shape_str(out.shape()));
  Tensor x2 = x.reshape({rows_of(x), in});
  Tensor o2 = out.reshape({rows_of(x), out_features});
  gemm(o2, x2, weight, false, true);
  if (bias) bias_act(o2, o2, bias, nullptr, Activation::none);
}

void bias_act(Tensor& out, const Tensor& x, const Tensor* bias, const Tensor* residual, Activation act) {
  if (x.ndim() < 1) throw_value_error("bias_act: x must have at least 1 dimension");
  like("bias_act", "out", out, x, "x");
  const int64_t cols = x.dim(-1);
  if (bias) vector_of("bias_act", "bias", *bias, cols, x);
  if (residual) like("bias_act", "residual", *residual, x, "x");
  BiasActParams p;
  p.dtype = x.dtype();
  p.rows = rows_of(x);
  p.cols = cols;
  p.act = act;
  p.out = out.raw();
  p.x = x.raw();
  p.bias = bias ? bias->raw() : nullptr;
  p.residual = residual ? residual->raw() : nullptr;
  {
    profile::Scope scope("bias_act");
    backend_for(x.device()).run(p, x.device().index);
  }
}

namespace {

// layer_norm and rms_norm: one set of checks and one params; beta is null for RMSNorm.
void norm(const char* op, bool rms, Tensor& out, Tensor* sum_out, const Tensor& x, const Tensor* bias,
          const Tensor* residual, const Tensor& gamma, const Tensor* beta, float eps) {
  if (x.ndim() < 1) throw_value_error(op, ": x must have at least 1 dimension");
  const int64_t cols = x.dim(-1);
  like(op, "out", out, x, "x");
  vector_of(op, "gamma", gamma, cols, x);
  if (beta) vector_of(op, "beta", *beta, cols, x);
  if (bias) vector_of(op, "bias", *bias, cols, x);
  if (residual) like(op, "residual", *residual, x, "x");
  if (sum_out) like(op, "sum_out", *sum_out, x, "x");
  if (!(eps >= 0.0f)) throw_value_error(op, ": eps must be >= 0, got ", eps);
  LayerNormParams p;
  p.dtype = x.dtype();
  p.rows = rows_of(x);
  p.cols = cols;
  p.eps = eps;
  p.rms = rms;
  p.out = out.raw();
  p.sum_out = sum_out ? sum_out->raw() : nullptr;
  p.x = x.raw();
  p.bias = bias ? bias->raw() : nullptr;
  p.residual = residual ? residual->raw() : nullptr;
  p.gamma = gamma.raw();
  p.beta = beta ? beta->raw() : nullptr;
  {
    profile::Scope scope(op);
    backend_for(x.device()).run(p, x.device().index);
  }
}

}  // namespace

void layer_norm(Tensor& out, Tensor* sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
                const Tensor& gamma, const Tensor& beta, float eps) {
  norm("layer_norm", false, out, sum_out, x, bias, residual, gamma, &beta, eps);
}

void rms_norm(Tensor& out, Tensor* sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
              const Tensor& gamma, float eps) {
  norm("rms_norm", true, out, sum_out, x, bias, residual, gamma, nullptr, eps);
}

void gated_act(Tensor& out, const Tensor& x, Activation act) {
  const char* op = "gated_act";
  if (x.ndim() < 1 || x.dim(-1) % 2 != 0)
    throw_value_error(op, ": x must end with an even number of columns (the two halves), got ", shape_str(x.shape()));
  const int64_t cols = x.dim(-1) / 2;
  Shape expected = x.shape();
  expected.back() = cols;
  shape_is(op, "out", out, expected);
  dtype_is(op, "out", out, x.dtype());
  same_device(op, "out", out, x);
  const auto o = reinterpret_cast<uintptr_t>(out.raw()), xi = reinterpret_cast<uintptr_t>(x.raw());
  if (out.nbytes() > 0 && x.nbytes() > 0 && o < xi + x.nbytes() && xi < o + out.nbytes())
    throw_value_error(op, ": out must not overlap x");
  GatedActParams p;
  p.dtype = x.dtype();
  p.rows = rows_of(x);
  p.cols = cols;
  p.act = act;
  p.out = out.raw();
  p.x = x.raw();
  if (p.rows == 0 || cols == 0) return;
  {
    profile::Scope scope(op);
    backend_for(x.device()).run(p, x.device().index);
  }
}

void embedding(Tensor& out, const Tensor& ids, const Tensor& table, float scale, const Tensor* position_ids,
               const Tensor* positions, const Tensor* table_scale) {
  dtype_is("embedding", "ids", ids, DType::i32);
  if (table.ndim() != 2) throw_value_error("embedding: table must be 2-D, got ", shape_str(table.shape()));
  const int64_t dim = table.dim(1);
  Shape expected = ids.shape();
  expected.push_back(dim);
  shape_is("embedding", "out", out, expected);
  // An int8 table (int8 models) reads as q * table_scale[row] into float32.
  const DType value_dtype = table_scale ? DType::f32 : table.dtype();
  if (table_scale) {
    dtype_is("embedding", "table", table, DType::i8);
    vector_of("embedding", "table_scale", *table_scale, table.dim(0), out);
    same_device("embedding", "table_scale", *table_scale, table);
    if (!table.device().is_cpu()) throw_value_error("embedding: int8 tables are CPU only");
  }
  dtype_is("embedding", "out", out, value_dtype);
  same_device("embedding", "ids", ids, table);
  same_device("embedding", "out", out, table);
  if ((position_ids == nullptr) != (positions == nullptr))
    throw_value_error("embedding: positions and position_ids go together");
  if (positions) {
    like("embedding", "position_ids", *position_ids, ids, "ids");
    if (positions->ndim() != 2 || positions->dim(1) != dim)
      throw_value_error("embedding: positions must be (n, ", dim, "), got ", shape_str(positions->shape()));
    dtype_is("embedding", "positions", *positions, value_dtype);
    same_device("embedding", "positions", *positions, table);
  }
  EmbeddingParams p;
  p.dtype = value_dtype;
  p.table_scale = table_scale ? table_scale->data<float>() : nullptr;
  p.rows = ids.numel();
  p.dim = dim;
  p.scale = scale;
  p.out = out.raw();
  p.ids = ids.data<int32_t>();
  p.table = table.raw();
  p.position_ids = position_ids ? position_ids->data<int32_t>() : nullptr;
  p.positions = positions ? positions->raw() : nullptr;
  {
    profile::Scope scope("embedding");
    backend_for(table.device()).run(p, table.device().index);
  }
}

namespace {

// The relative position bias (span, heads) must cover origin + j - i for every (i, j) the
// kernel may read. kv_lengths may live on the device, so the bound assumes all kv_len keys
// (a decode step over a longer cache passes causal with causal_offset = step).
void check_rel_bias(const char* op, const Tensor& bias, const AttentionOptions& opt, int64_t q_len, int64_t kv_len,
                    const Tensor& out) {
  if (bias.ndim() != 2 || bias.dim(1) != opt.heads || bias.dim(0) < 1)
    throw_value_error(op, ": rel_bias must be (span, ", opt.heads, "), got ", shape_str(bias.shape()),
                      " (span >= 1, heads ", opt.heads, ")");
  dtype_is(op, "rel_bias", bias, out.dtype());
  same_device(op, "rel_bias", bias, out);
  const int64_t span = bias.dim(0);
  if (opt.rel_bias_origins) return;  // per-row origins on the device: the caller's bounds
  // Rows before first_row see no key under the causal mask; key j of row i is visible for
  // j < kv_end(i), and kv_end(i) - i is largest at the first row that sees a key.
  const int64_t first_row = opt.causal ? std::max<int64_t>(0, -opt.causal_offset) : 0;
  if (first_row >= q_len || kv_len == 0) return;  // no key is read
  const int64_t first_end = opt.causal ? std::min(kv_len, first_row + opt.causal_offset + 1) : kv_len;
  const int64_t lo = opt.rel_bias_origin - (q_len - 1);             // j = 0 of the last row
  const int64_t hi = opt.rel_bias_origin + first_end - 1 - first_row;
  if (lo < 0 || hi >= span)
    throw_value_error(op, ": rel_bias rows [", lo, ", ", hi, "] (rel_bias_origin ", opt.rel_bias_origin,
                      " + j - i for q_len ", q_len, ", kv_len ", kv_len, opt.causal ? ", causal offset " : "",
                      opt.causal ? std::to_string(opt.causal_offset) : std::string(), ") out of range for span ",
                      span);
}

// Per-row rel-bias origins: int32 (batch) on out's device, with a bias, for one-query steps.
void check_rel_bias_origins(const char* op, const Tensor& origins, const AttentionOptions& opt, int64_t q_len,
                            const Tensor& out) {
  if (!opt.rel_bias) throw_value_error(op, ": rel_bias_origins given without rel_bias");
  if (q_len != 1) throw_value_error(op, ": rel_bias_origins needs q_len 1 (decode steps), got q_len ", q_len);
  dtype_is(op, "rel_bias_origins", origins, DType::i32);
  shape_is(op, "rel_bias_origins", origins, {out.dim(0)});
  same_device(op, "rel_bias_origins", origins, out);
}

// Paged K/V (AttentionOptions::block_table): returns kv_len = blocks_per_row * block_size.
int64_t check_paged_kv(const char* op, const AttentionOptions& opt, HeadsView k, HeadsView v, const Tensor& out) {
  const Tensor& table = *opt.block_table;
  const int64_t batch = out.dim(0);
  if (out.dim(1) != 1) throw_value_error(op, ": paged K/V (block_table) needs q_len 1, got q_len ", out.dim(1));
  if (opt.kv_group != 1) throw_value_error(op, ": paged K/V (block_table) needs kv_group 1, got ", opt.kv_group);
  if (!opt.kv_lengths) throw_value_error(op, ": paged K/V (block_table) needs kv_lengths");
  if (opt.block_size < 1) throw_value_error(op, ": block_size must be >= 1 with a block_table, got ", opt.block_size);
  dtype_is(op, "block_table", table, DType::i32);
  if (table.ndim() != 2 || table.dim(0) != batch)
    throw_value_error(op, ": block_table must be (", batch, ", blocks_per_row), got ", shape_str(table.shape()));
  same_device(op, "block_table", table, out);
  if (k.tensor->dim(1) != opt.block_size || k.tensor->shape() != v.tensor->shape())
    throw_value_error(op, ": paged k and v must both be pools (num_blocks, block_size ", opt.block_size,
                      ", width), got k ", shape_str(k.tensor->shape()), ", v ", shape_str(v.tensor->shape()));
  return table.dim(1) * opt.block_size;
}

}  // namespace

AttentionParams attention_params(const char* op, const Tensor& out, HeadsView q, HeadsView k, HeadsView v,
                                 const AttentionOptions& opt) {
  for (const Tensor* t : {q.tensor, k.tensor, v.tensor, static_cast<const Tensor*>(&out)}) {
    if (!t || t->ndim() != 3) throw_value_error(op, ": q, k, v and out must be 3-D (batch, len, width)");
    dtype_is(op, "input", *t, out.dtype());
    same_device(op, "input", *t, out);
  }
  if (opt.heads < 1) throw_value_error(op, ": heads must be >= 1, got ", opt.heads);
  const int64_t width = out.dim(2);
  if (width % opt.heads != 0)
    throw_value_error(op, ": output width ", width, " is not divisible by ", opt.heads, " heads");
  const int64_t batch = out.dim(0), q_len = out.dim(1);
  if (opt.kv_group < 1 || batch % opt.kv_group != 0)
    throw_value_error(op, ": kv_group ", opt.kv_group, " does not divide the batch ", batch);
  const int64_t kv_batch = batch / opt.kv_group;
  if (q.tensor->dim(1) != q_len) throw_value_error(op, ": q has ", q.tensor->dim(1), " rows, out has ", q_len);
  // Paged K/V: k and v are pools (num_blocks, block_size, width), kv_len spans the table.
  if (!opt.block_table && opt.block_size != 0)
    throw_value_error(op, ": block_size ", opt.block_size, " given without a block_table");
  const int64_t kv_len = opt.block_table ? check_paged_kv(op, opt, k, v, out) : k.tensor->dim(1);
  if (q.tensor->dim(0) != batch || (!opt.block_table && (k.tensor->dim(0) != kv_batch || v.tensor->dim(0) != kv_batch)))
    throw_value_error(op, ": batch sizes differ: q ", q.tensor->dim(0), ", k ", k.tensor->dim(0), ", v ",
                      v.tensor->dim(0), ", out ", batch, " (kv_group ", opt.kv_group, ")");
  if (!opt.block_table && v.tensor->dim(1) != kv_len)
    throw_value_error(op, ": k has ", kv_len, " rows, v has ", v.tensor->dim(1));
  for (HeadsView hv : {q, k, v}) {
    if (hv.col < 0 || hv.col + width > hv.tensor->dim(2))
      throw_value_error(op, ": columns [", hv.col, ", ", hv.col + width, ") out of range for width ", hv.tensor->dim(2));
  }
  if (opt.kv_lengths) {
    dtype_is(op, "kv_lengths", *opt.kv_lengths, DType::i32);
    shape_is(op, "kv_lengths", *opt.kv_lengths, {kv_batch});
    same_device(op, "kv_lengths", *opt.kv_lengths, out);
  }
  if (opt.rel_bias) check_rel_bias(op, *opt.rel_bias, opt, q_len, kv_len, out);
  if (opt.rel_bias_origins) check_rel_bias_origins(op, *opt.rel_bias_origins, opt, q_len, out);
  const int64_t head_dim = width / opt.heads;
  AttentionParams p;
  p.dtype = out.dtype();
  p.batch = batch;
  p.heads = opt.heads;
  p.head_dim = head_dim;
  p.q_len = q_len;
  p.kv_len = kv_len;
  const size_t es = dtype_size(out.dtype());
  auto at = [es](const HeadsView& hv) { return static_cast<const char*>(hv.tensor->raw()) + hv.col * es; };
  p.q = at(q);
  p.q_row_stride = q.tensor->dim(2);
  p.q_batch_stride = q_len * p.q_row_stride;
  p.k = at(k);
  p.k_row_stride = k.tensor->dim(2);
  p.k_batch_stride = k.tensor->dim(1) * p.k_row_stride;  // a block of the pool when paged
  p.v = at(v);
  p.v_row_stride = v.tensor->dim(2);
  p.v_batch_stride = v.tensor->dim(1) * p.v_row_stride;
  if (opt.block_table) {
    p.block_table = opt.block_table->data<int32_t>();
    p.blocks_per_row = opt.block_table->dim(1);
    p.block_size = opt.block_size;
  }
  p.kv_group = opt.kv_group;
  if (opt.weights_out) {
    if (opt.weights_out->dtype() != DType::f32 || opt.weights_out->shape() != Shape{batch, q_len, kv_len})
      throw_value_error(op, ": weights_out must be float32 (", batch, ", ", q_len, ", ", kv_len, "), got ",
                        opt.weights_out->describe());
    same_device(op, "weights_out", *opt.weights_out, out);
    p.weights_out = opt.weights_out->data<float>();
  }
  p.out = out.raw();
  p.out_row_stride = width;
  p.out_batch_stride = q_len * width;
  p.kv_lengths = opt.kv_lengths ? opt.kv_lengths->data<int32_t>() : nullptr;
  p.causal = opt.causal;
  p.causal_offset = opt.causal_offset;
  p.scale = opt.scale != 0.0f ? opt.scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
  if (opt.rel_bias) {
    p.rel_bias = opt.rel_bias->raw();
    p.rel_bias_origin = opt.rel_bias_origin;
    p.rel_bias_span = opt.rel_bias->dim(0);
    p.rel_bias_origins = opt.rel_bias_origins ? opt.rel_bias_origins->data<int32_t>() : nullptr;
  }
  return p;
}

void attention(Tensor& out, HeadsView q, HeadsView k, HeadsView v, const AttentionOptions& opt) {
  const AttentionParams p = attention_params("attention", out, q, k, v, opt);
  if (p.batch == 0 || p.q_len == 0 || out.dim(2) == 0) return;
  {
    profile::Scope scope("attention");
    backend_for(out.device()).run(p, out.device().index);
  }
}

void copy_rows(Tensor& dst, const Tensor& src, int64_t rows, int64_t cols) {
  if (dst.ndim() != 2 || src.ndim() != 2) throw_value_error("copy_rows: expected 2-D tensors");
  if (rows < 0 || rows > dst.dim(0) || rows > src.dim(0) || cols < 0 || cols > dst.dim(1) || cols > src.dim(1))
    throw_value_error("copy_rows: ", rows, " x ", cols, " out of range for ", dst.describe(), " <- ", src.describe());
  dtype_is("copy_rows", "src", src, dst.dtype());
  same_device("copy_rows", "src", src, dst);
  const size_t es = dtype_size(dst.dtype());
  Copy2dParams p;
  p.dst = dst.raw();
  p.dst_stride_bytes = dst.dim(1) * static_cast<int64_t>(es);
  p.src = src.raw();
  p.src_stride_bytes = src.dim(1) * static_cast<int64_t>(es);
  p.rows = rows;
  p.bytes_per_row = cols * static_cast<int64_t>(es);
  if (rows == 0 || cols == 0) return;
  {
    profile::Scope scope("copy_strided");
    backend_for(dst.device()).run(p, dst.device().index);
  }
}

void copy_strided(Tensor& dst, int64_t dst_offset, int64_t dst_stride, const Tensor& src, int64_t src_offset,
                  int64_t src_stride, int64_t rows, int64_t cols) {
  dtype_is("copy_strided", "src", src, dst.dtype());
  same_device("copy_strided", "src", src, dst);
  if (rows == 0 || cols == 0) return;
  auto last = [&](int64_t off, int64_t stride) { return off + (rows - 1) * stride + cols; };
  if (rows < 0 || cols < 0 || dst_offset < 0 || src_offset < 0 || last(dst_offset, dst_stride) > dst.numel() ||
      last(src_offset, src_stride) > src.numel())
    throw_value_error("copy_strided: block of ", rows, " x ", cols, " out of range");
  const int64_t es = static_cast<int64_t>(dtype_size(dst.dtype()));
  Copy2dParams p;
  p.dst = static_cast<char*>(dst.raw()) + dst_offset * es;
  p.dst_stride_bytes = dst_stride * es;
  p.src = static_cast<const char*>(src.raw()) + src_offset * es;
  p.src_stride_bytes = src_stride * es;
  p.rows = rows;
  p.bytes_per_row = cols * es;
  backend_for(dst.device()).run(p, dst.device().index);
}

void gather_rows(Tensor& t, const std::vector<int32_t>& src_rows, int64_t cols_to_move) {
  if (t.ndim() < 1) throw_value_error("gather_rows: expected at least 1 dimension");
  const int64_t n = t.dim(0);
  const int64_t row_elems = n ? t.numel() / n : 0;
  if (static_cast<int64_t>(src_rows.size()) != n)
    throw_value_error("gather_rows: ", src_rows.size(), " indices for ", n, " rows");
  for (int32_t s : src_rows)
    if (s < 0 || s >= n) throw_value_error("gather_rows: index ", s, " out of range [0, ", n, ")");
  if (cols_to_move < 0) cols_to_move = row_elems;
  const size_t es = dtype_size(t.dtype());
  GatherRowsParams p;
  p.data = t.raw();
  p.num_rows = n;
  p.row_stride_bytes = row_elems * static_cast<int64_t>(es);
  p.bytes_per_row = std::min(cols_to_move, row_elems) * static_cast<int64_t>(es);
  p.src_rows = src_rows.data();
  if (n == 0 || p.bytes_per_row == 0) return;
  {
    profile::Scope scope("gather_rows");
    backend_for(t.device()).run(p, t.device().index);
  }
}

void scatter_rows(Tensor& dst, int64_t dst_col, const Tensor& dst_rows, const Tensor& src, int64_t src_col,
                  int64_t cols) {
  const char* op = "scatter_rows";
  if (dst.ndim() < 1) throw_value_error(op, ": dst must have at least 1 dimension");
  if (src.ndim() != 2 && !(src.ndim() == 3 && src.dim(1) == 1))
    throw_value_error(op, ": src must be (rows, width) or (rows, 1, width), got ", shape_str(src.shape()));
  dtype_is(op, "src", src, dst.dtype());
  same_device(op, "src", src, dst);
  dtype_is(op, "dst_rows", dst_rows, DType::i32);
  same_device(op, "dst_rows", dst_rows, dst);
  const int64_t rows = src.dim(0);
  shape_is(op, "dst_rows (one per src row)", dst_rows, {rows});
  const int64_t dst_width = dst.dim(0) ? dst.numel() / dst.dim(0) : 0, src_width = src.dim(-1);
  if (cols < 0 || dst_col < 0 || src_col < 0 || dst_col + cols > dst_width || src_col + cols > src_width)
    throw_value_error(op, ": columns [", dst_col, ", ", dst_col + cols, ") of dst rows of ", dst_width,
                      " and [", src_col, ", ", src_col + cols, ") of src rows of ", src_width, " out of range");
  if (rows == 0 || cols == 0) return;
  const int64_t es = static_cast<int64_t>(dtype_size(dst.dtype()));
  ScatterRowsParams p;
  p.dst = static_cast<char*>(dst.raw()) + dst_col * es;
  p.dst_stride_bytes = dst_width * es;
  p.dst_num_rows = dst.dim(0);
  p.src = static_cast<const char*>(src.raw()) + src_col * es;
  p.src_stride_bytes = src_width * es;
  p.rows = rows;
  p.bytes_per_row = cols * es;
  p.dst_rows = dst_rows.data<int32_t>();
  {
    profile::Scope scope(op);
    backend_for(dst.device()).run(p, dst.device().index);
  }
}

Activation parse_activation(const std::string& name) {
  if (name == "none" || name == "linear" || name == "identity") return Activation::none;
  if (name == "relu") return Activation::relu;
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_tanh" || name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast")
    return Activation::gelu_tanh;
  if (name == "silu" || name == "swish") return Activation::silu;
  throw_value_error("unknown activation '", name, "': expected one of relu, gelu, gelu_new (tanh), silu/swish, none");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::none: return "none";
    case Activation::relu: return "relu";
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_tanh";
    case Activation::silu: return "silu";
  }
  return "?";
}

}  // namespace tformer::ops
