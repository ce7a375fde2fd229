// Argument checks and device dispatch for the training ops of train_ops.h (attention's
// are in train_attention.cpp).
#include "tformer/train_ops.h"

#include <cmath>

#include "op_checks.h"
#include "tformer/profile.h"

namespace tformer::ops {

using namespace checks;

namespace {

// A per-row statistic: float32 (rows) on x's device.
void row_stat(const char* op, const char* what, const Tensor& t, int64_t rows, const Tensor& x) {
  shape_is(op, what, t, {rows});
  dtype_is(op, what, t, DType::f32);
  same_device(op, what, t, x);
}

// Like vector_of, with a parameter gradient's dtype rule (dtype_or_f32_of).
bool grad_vector(const char* op, const char* what, const Tensor& t, int64_t n, const Tensor& like) {
  shape_is(op, what, t, {n});
  same_device(op, what, t, like);
  return dtype_or_f32_of(op, what, t, like);
}

}  // namespace

void linear_backward(Tensor* dx, Tensor* dweight, Tensor* dbias, const Tensor& dy, const Tensor& x,
                     const Tensor& weight, bool accumulate_dx) {
  const char* op = "linear_backward";
  if (weight.ndim() != 2) throw_value_error(op, ": weight must be 2-D (out, in), got ", shape_str(weight.shape()));
  const int64_t out_features = weight.dim(0), in = weight.dim(1);
  if (x.ndim() < 1 || x.dim(-1) != in)
    throw_value_error(op, ": x must end with ", in, " features, got ", shape_str(x.shape()));
  Shape dy_shape = x.shape();
  dy_shape.back() = out_features;
  shape_is(op, "dy", dy, dy_shape);
  dtype_is(op, "dy", dy, weight.dtype());
  dtype_is(op, "x", x, weight.dtype());
  same_device(op, "dy", dy, weight);
  same_device(op, "x", x, weight);
  if (dx) like(op, "dx", *dx, x, "x");
  if (dweight) {
    shape_is(op, "dweight", *dweight, weight.shape());
    same_device(op, "dweight", *dweight, weight);
    dtype_or_f32_of(op, "dweight", *dweight, weight);
  }
  if (dbias) grad_vector(op, "dbias", *dbias, out_features, weight);
  const int64_t rows = rows_of(x);
  const Tensor dy2 = dy.reshape({rows, out_features});
  const Tensor x2 = x.reshape({rows, in});
  if (dx) {
    Tensor dx2 = dx->reshape({rows, in});
    gemm(dx2, dy2, weight, false, false, 1.0f, accumulate_dx ? 1.0f : 0.0f);  // dx = dy @ W
  }
  if (dweight) gemm(*dweight, dy2, x2, true, false, 1.0f, 1.0f);  // dW += dy^T @ x
  if (dbias) sum_rows(*dbias, dy2);
}

void sum_rows(Tensor& dbias, const Tensor& dy) {
  const char* op = "sum_rows";
  if (dy.ndim() < 1) throw_value_error(op, ": dy must have at least 1 dimension");
  SumRowsParams p;
  p.grad_f32 = grad_vector(op, "dbias", dbias, dy.dim(-1), dy);
  p.dtype = dy.dtype();
  p.rows = rows_of(dy);
  p.cols = dy.dim(-1);
  p.out = dbias.raw();
  p.x = dy.raw();
  if (p.rows == 0 || p.cols == 0) return;
  profile::Scope scope(op);
  backend_for(dy.device()).run(p, dy.device().index);
}

void bias_act_backward(Tensor& dz, const Tensor& dy, const Tensor& z, Activation act) {
  const char* op = "activation_backward";  // the name Python users call it by (tformer.ops)
  like(op, "dy", dy, z, "z");
  like(op, "dz", dz, z, "z");
  BiasActBackwardParams p;
  p.dtype = z.dtype();
  p.n = z.numel();
  p.act = act;
  p.dz = dz.raw();
  p.dy = dy.raw();
  p.z = z.raw();
  if (p.n == 0) return;
  profile::Scope scope(op);
  backend_for(z.device()).run(p, z.device().index);
}

namespace {

// layer_norm_train and rms_norm_train: one set of checks and one params; beta and mean are
// null for RMSNorm.
void norm_train(const char* op, bool rms, Tensor& out, Tensor& sum_out, const Tensor& x, const Tensor* bias,
                const Tensor* residual, const Tensor& gamma, const Tensor* beta, float eps, Tensor* mean,
                Tensor& rstd) {
  if (x.ndim() < 1) throw_value_error(op, ": x must have at least 1 dimension");
  const int64_t cols = x.dim(-1), rows = rows_of(x);
  like(op, "out", out, x, "x");
  like(op, "sum_out", sum_out, x, "x");
  if (residual) like(op, "residual", *residual, x, "x");
  vector_of(op, "gamma", gamma, cols, x);
  if (beta) vector_of(op, "beta", *beta, cols, x);
  if (bias) vector_of(op, "bias", *bias, cols, x);
  if (mean) row_stat(op, "mean", *mean, rows, x);
  row_stat(op, "rstd", rstd, rows, x);
  if (!(eps >= 0.0f)) throw_value_error(op, ": eps must be >= 0, got ", eps);
  saves_stats(op, x);
  LayerNormParams p;
  p.dtype = x.dtype();
  p.rows = rows;
  p.cols = cols;
  p.eps = eps;
  p.rms = rms;
  p.out = out.raw();
  p.sum_out = sum_out.raw();
  p.x = x.raw();
  p.bias = bias ? bias->raw() : nullptr;
  p.residual = residual ? residual->raw() : nullptr;
  p.gamma = gamma.raw();
  p.beta = beta ? beta->raw() : nullptr;
  p.mean_out = mean ? mean->data<float>() : nullptr;
  p.rstd_out = rstd.data<float>();
  if (rows == 0 || cols == 0) return;
  profile::Scope scope(op);
  backend_for(x.device()).run(p, x.device().index);
}

// layer_norm_backward and rms_norm_backward: dbeta and mean are null for RMSNorm.
void norm_backward(const char* op, bool rms, Tensor& ds, Tensor* dgamma, Tensor* dbeta, const Tensor& dout,
                   const Tensor& s, const Tensor* mean, const Tensor& rstd, const Tensor& gamma, bool accumulate) {
  if (s.ndim() < 1) throw_value_error(op, ": s must have at least 1 dimension");
  const int64_t cols = s.dim(-1), rows = rows_of(s);
  like(op, "dout", dout, s, "s");
  like(op, "ds", ds, s, "s");
  vector_of(op, "gamma", gamma, cols, s);
  const bool dgamma_f32 = dgamma && grad_vector(op, "dgamma", *dgamma, cols, s);
  const bool dbeta_f32 = dbeta && grad_vector(op, "dbeta", *dbeta, cols, s);
  if (dgamma && dbeta && dgamma_f32 != dbeta_f32)
    throw_type_error(op, ": dgamma and dbeta must have one dtype, got ", dgamma->describe(), " and ", dbeta->describe());
  if (mean) row_stat(op, "mean", *mean, rows, s);
  row_stat(op, "rstd", rstd, rows, s);
  LayerNormBackwardParams p;
  p.grad_f32 = dgamma_f32 || dbeta_f32;
  p.dtype = s.dtype();
  p.rows = rows;
  p.cols = cols;
  p.accumulate = accumulate;
  p.rms = rms;
  p.ds = ds.raw();
  p.dgamma = dgamma ? dgamma->raw() : nullptr;
  p.dbeta = dbeta ? dbeta->raw() : nullptr;
  p.dout = dout.raw();
  p.s = s.raw();
  p.mean = mean ? mean->data<float>() : nullptr;
  p.rstd = rstd.data<float>();
  p.gamma = gamma.raw();
  if (rows == 0 || cols == 0) return;
  profile::Scope scope(op);
  backend_for(s.device()).run(p, s.device().index);
}

}  // namespace

void layer_norm_train(Tensor& out, Tensor& sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
                      const Tensor& gamma, const Tensor& beta, float eps, Tensor& mean, Tensor& rstd) {
  norm_train("layer_norm_train", false, out, sum_out, x, bias, residual, gamma, &beta, eps, &mean, rstd);
}

void layer_norm_backward(Tensor& ds, Tensor* dgamma, Tensor* dbeta, const Tensor& dout, const Tensor& s,
                         const Tensor& mean, const Tensor& rstd, const Tensor& gamma, bool accumulate) {
  norm_backward("layer_norm_backward", false, ds, dgamma, dbeta, dout, s, &mean, rstd, gamma, accumulate);
}

void rms_norm_train(Tensor& out, Tensor& sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
                    const Tensor& gamma, float eps, Tensor& rstd) {
  norm_train("rms_norm_train", true, out, sum_out, x, bias, residual, gamma, nullptr, eps, nullptr, rstd);
}

void rms_norm_backward(Tensor& ds, Tensor* dgamma, const Tensor& dout, const Tensor& s, const Tensor& rstd,
                       const Tensor& gamma, bool accumulate) {
  norm_backward("rms_norm_backward", true, ds, dgamma, nullptr, dout, s, nullptr, rstd, gamma, accumulate);
}

void gated_act_backward(Tensor& dx, const Tensor& dy, const Tensor& x, Activation act) {
  const char* op = "gated_act_backward";
  if (x.ndim() < 1 || x.dim(-1) % 2 != 0)
    throw_value_error(op, ": x must be (..., 2 * cols), got ", shape_str(x.shape()));
  Shape dy_shape = x.shape();
  dy_shape.back() /= 2;
  shape_is(op, "dy", dy, dy_shape);
  dtype_is(op, "dy", dy, x.dtype());
  same_device(op, "dy", dy, x);
  like(op, "dx", dx, x, "x");
  GatedActBackwardParams p;
  p.dtype = x.dtype();
  p.rows = rows_of(x);
  p.cols = dy_shape.back();
  p.act = act;
  p.dx = dx.raw();
  p.dy = dy.raw();
  p.x = x.raw();
  if (p.rows == 0 || p.cols == 0) return;
  profile::Scope scope(op);
  backend_for(x.device()).run(p, x.device().index);
}

void embedding_backward(Tensor* dtable, Tensor* dpositions, const Tensor& dout, const Tensor& ids,
                        const Tensor* position_ids, float scale, int32_t skip_id) {
  const char* op = "embedding_backward";
  dtype_is(op, "ids", ids, DType::i32);
  if (dout.ndim() < 1) throw_value_error(op, ": dout must have at least 1 dimension");
  const int64_t dim = dout.dim(-1);
  Shape expected = ids.shape();
  expected.push_back(dim);
  shape_is(op, "dout", dout, expected);
  same_device(op, "ids", ids, dout);
  auto table = [&](const Tensor* t, const char* what) {
    if (!t) return false;
    if (t->ndim() != 2 || t->dim(1) != dim)
      throw_value_error(op, ": ", what, " must be (n, ", dim, "), got ", shape_str(t->shape()));
    same_device(op, what, *t, dout);
    return dtype_or_f32_of(op, what, *t, dout);
  };
  const bool dtable_f32 = table(dtable, "dtable");
  const bool dpositions_f32 = table(dpositions, "dpositions");
  if (dtable && dpositions && dtable_f32 != dpositions_f32)
    throw_type_error(op, ": dtable and dpositions must have one dtype, got ", dtable->describe(), " and ",
                     dpositions->describe());
  if (dpositions) {
    if (!position_ids) throw_value_error(op, ": dpositions needs position_ids");
    dtype_is(op, "position_ids", *position_ids, DType::i32);
    shape_is(op, "position_ids", *position_ids, ids.shape());
    same_device(op, "position_ids", *position_ids, dout);
  }
  // Ids index the tables: check them on the host (a copy when they live on a device).
  const Tensor hid = on_host(ids);
  const Tensor hpos = dpositions ? on_host(*position_ids) : Tensor();
  const int32_t* idp = hid.data<int32_t>();
  for (int64_t r = 0; r < hid.numel(); ++r) {
    if (idp[r] == skip_id) continue;
    if (dtable && (idp[r] < 0 || idp[r] >= dtable->dim(0)))
      throw_value_error(op, ": id ", idp[r], " at row ", r, " outside the table [0, ", dtable->dim(0), ")");
    if (dpositions) {
      const int32_t pos = hpos.data<int32_t>()[r];
      if (pos < 0 || pos >= dpositions->dim(0))
        throw_value_error(op, ": position id ", pos, " at row ", r, " outside [0, ", dpositions->dim(0), ")");
    }
  }
  EmbeddingBackwardParams p;
  p.dtype = dout.dtype();
  p.grad_f32 = dtable_f32 || dpositions_f32;
  p.rows = ids.numel();
  p.dim = dim;
  p.scale = scale;
  p.skip_id = skip_id;
  p.dtable = dtable ? dtable->raw() : nullptr;
  p.dpositions = dpositions ? dpositions->raw() : nullptr;
  p.dout = dout.raw();
  p.ids = ids.data<int32_t>();
  p.position_ids = dpositions ? position_ids->data<int32_t>() : nullptr;
  if (p.rows == 0 || dim == 0 || (!dtable && !dpositions)) return;
  profile::Scope scope(op);
  backend_for(dout.device()).run(p, dout.device().index);
}

void cross_entropy(Tensor& loss, Tensor* dlogits, const Tensor& logits, const Tensor& labels, float smoothing,
                   int32_t ignore_index, float grad_scale) {
  const char* op = "cross_entropy";
  if (logits.ndim() < 1) throw_value_error(op, ": logits must have at least 1 dimension (..., classes)");
  const int64_t vocab = logits.dim(-1);
  Shape label_shape(logits.shape().begin(), logits.shape().end() - 1);
  dtype_is(op, "labels", labels, DType::i32);
  shape_is(op, "labels", labels, label_shape);
  same_device(op, "labels", labels, logits);
  shape_is(op, "loss", loss, label_shape);
  dtype_is(op, "loss", loss, DType::f32);
  same_device(op, "loss", loss, logits);
  if (dlogits) like(op, "dlogits", *dlogits, logits, "logits");
  if (!(smoothing >= 0.0f && smoothing <= 1.0f))
    throw_value_error(op, ": label smoothing must be in [0, 1], got ", smoothing);
  if (!std::isfinite(grad_scale)) throw_value_error(op, ": grad_scale must be finite, got ", grad_scale);
  const Tensor hl = on_host(labels);
  const int32_t* lp = hl.data<int32_t>();
  for (int64_t r = 0; r < hl.numel(); ++r)
    if (lp[r] != ignore_index && (lp[r] < 0 || lp[r] >= vocab))
      throw_value_error(op, ": label ", lp[r], " at row ", r, " outside [0, ", vocab, ") (ignore_index is ",
                        ignore_index, ")");
  if (vocab == 0 && hl.numel() > 0) {
    bool all_ignored = true;
    for (int64_t r = 0; r < hl.numel(); ++r) all_ignored = all_ignored && lp[r] == ignore_index;
    if (!all_ignored) throw_value_error(op, ": logits have 0 classes");
  }
  CrossEntropyParams p;
  p.dtype = logits.dtype();
  p.rows = hl.numel();
  p.vocab = vocab;
  p.smoothing = smoothing;
  p.ignore_index = ignore_index;
  p.grad_scale = grad_scale;
  p.loss = loss.data<float>();
  p.dlogits = dlogits ? dlogits->raw() : nullptr;
  p.logits = logits.raw();
  p.labels = labels.data<int32_t>();
  if (p.rows == 0) return;
  if (vocab == 0) {  // every row ignored
    loss.fill_zero();
    return;
  }
  profile::Scope scope(op);
  backend_for(logits.device()).run(p, logits.device().index);
}

void dropout(Tensor& out, const Tensor& x, float p, uint64_t seed, uint64_t offset) {
  const char* op = "dropout";
  like(op, "out", out, x, "x");
  if (!(p >= 0.0f && p <= 1.0f)) throw_value_error(op, ": p must be in [0, 1], got ", p);
  DropoutParams dp;
  dp.dtype = x.dtype();
  dp.n = x.numel();
  dp.p = p;
  dp.seed = seed;
  dp.offset = offset;
  dp.out = out.raw();
  dp.x = x.raw();
  if (dp.n == 0) return;
  profile::Scope scope(op);
  backend_for(x.device()).run(dp, x.device().index);
}

void adamw(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWOptions& opt, Tensor* param_half) {
  const char* op = "adamw";
  dtype_is(op, "param", param, DType::f32);
  like(op, "grad", grad, param, "param");
  like(op, "m", m, param, "param");
  like(op, "v", v, param, "param");
  if (param_half) {
    shape_is(op, "param_half", *param_half, param.shape());
    same_device(op, "param_half", *param_half, param);
    if (param_half->dtype() != DType::f16 && param_half->dtype() != DType::bf16)
      throw_type_error(op, ": param_half must be float16 or bfloat16, got ", param_half->describe());
    if (param.device().is_cpu())
      throw_value_error(op, ": param_half (a half-precision copy of the updated weights) is CUDA only, ",
                        "and param is on cpu");
  }
  if (opt.step < 1) throw_value_error(op, ": step must be >= 1 (1-based), got ", opt.step);
  if (!(opt.lr >= 0.0) || !std::isfinite(opt.lr)) throw_value_error(op, ": lr must be >= 0, got ", opt.lr);
  if (!(opt.beta1 >= 0.0 && opt.beta1 < 1.0)) throw_value_error(op, ": beta1 must be in [0, 1), got ", opt.beta1);
  if (!(opt.beta2 >= 0.0 && opt.beta2 < 1.0)) throw_value_error(op, ": beta2 must be in [0, 1), got ", opt.beta2);
  if (!(opt.eps >= 0.0)) throw_value_error(op, ": eps must be >= 0, got ", opt.eps);
  if (!(opt.weight_decay >= 0.0) || !std::isfinite(opt.weight_decay))
    throw_value_error(op, ": weight_decay must be >= 0, got ", opt.weight_decay);
  if (!std::isfinite(opt.grad_scale)) throw_value_error(op, ": grad_scale must be finite, got ", opt.grad_scale);
  AdamWParams p;
  p.n = param.numel();
  p.lr = opt.lr;
  p.beta1 = opt.beta1;
  p.beta2 = opt.beta2;
  p.eps = opt.eps;
  p.weight_decay = opt.weight_decay;
  p.step = opt.step;
  p.grad_scale = opt.grad_scale;
  p.param = param.data<float>();
  p.grad = grad.data<float>();
  p.m = m.data<float>();
  p.v = v.data<float>();
  if (param_half) {
    p.param_half = param_half->raw();
    p.half_dtype = param_half->dtype();
  }
  if (p.n == 0) return;
  profile::Scope scope(op);
  backend_for(param.device()).run(p, param.device().index);
}

double sum_squares(const Tensor& t) {
  SumSquaresParams p;
  p.dtype = t.dtype();
  p.n = t.numel();
  p.x = t.raw();
  if (p.n == 0) return 0.0;
  profile::Scope scope("sum_squares");
  return backend_for(t.device()).run(p, t.device().index);
}

}  // namespace tformer::ops
