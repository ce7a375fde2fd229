// Argument checks and device dispatch for attention_train and attention_backward
// (train_ops.h). The checks of the forward are those of ops::attention, restricted to
// kv_group 1 (the beams' shared K/V exist only in decoding).
#include <cmath>

#include "op_checks.h"
#include "tformer/profile.h"
#include "tformer/train_ops.h"

namespace tformer::ops {

using namespace checks;

namespace {

// The forward's checks and params (ops::attention's), restricted to kv_group 1.
AttentionParams forward_params(const char* op, const Tensor& out, HeadsView q, HeadsView k, HeadsView v,
                               const AttentionOptions& opt) {
  if (opt.kv_group != 1) throw_value_error(op, ": kv_group must be 1 for training, got ", opt.kv_group);
  if (opt.block_table || opt.rel_bias_origins)
    throw_value_error(op, ": paged K/V and per-row rel_bias_origins are for decode steps, not training");
  return attention_params(op, out, q, k, v, opt);
}

void check_lse(const char* op, const Tensor& lse, const AttentionParams& p, const Tensor& out) {
  shape_is(op, "lse", lse, {p.batch, p.heads, p.q_len});
  dtype_is(op, "lse", lse, DType::f32);
  same_device(op, "lse", lse, out);
}

// A gradient's column block: (batch, rows, >= col + width), written by the backward.
void check_grad_view(const char* op, const char* what, MutableHeadsView g, int64_t batch, int64_t rows,
                     int64_t width, const Tensor& like) {
  if (!g.tensor || g.tensor->ndim() != 3 || g.tensor->dim(0) != batch || g.tensor->dim(1) != rows)
    throw_value_error(op, ": ", what, " must be a 3-D (", batch, ", ", rows, ", width) tensor, got ",
                      g.tensor ? shape_str(g.tensor->shape()) : std::string("none"));
  if (g.col < 0 || g.col + width > g.tensor->dim(2))
    throw_value_error(op, ": ", what, " columns [", g.col, ", ", g.col + width, ") out of range for width ",
                      g.tensor->dim(2));
  dtype_is(op, what, *g.tensor, like.dtype());
  same_device(op, what, *g.tensor, like);
}

// Whether column blocks [a, a + width) of ta and [b, b + width) of tb may share memory:
// disjoint byte ranges never do; two views of the same tensor do when the columns meet;
// other views that share bytes are refused.
bool overlaps(const Tensor& ta, int64_t a, const Tensor& tb, int64_t b, int64_t width) {
  if (ta.storage() != tb.storage()) return false;
  const char* sa = static_cast<const char*>(ta.raw());
  const char* sb = static_cast<const char*>(tb.raw());
  if (sa + ta.nbytes() <= sb || sb + tb.nbytes() <= sa) return false;
  if (sa != sb || ta.shape() != tb.shape()) return true;
  return a < b + width && b < a + width;
}

}  // namespace

void attention_train(Tensor& out, HeadsView q, HeadsView k, HeadsView v, const AttentionOptions& opt, Tensor& lse) {
  const char* op = "attention_train";
  AttentionParams p = forward_params(op, out, q, k, v, opt);
  check_lse(op, lse, p, out);
  p.lse_out = lse.data<float>();
  saves_stats(op, out);
  if (p.batch == 0 || p.q_len == 0 || out.dim(2) == 0) return;
  profile::Scope scope(op);
  backend_for(out.device()).run(p, out.device().index);
}

void attention_backward(MutableHeadsView dq, MutableHeadsView dk, MutableHeadsView dv, HeadsView q, HeadsView k,
                        HeadsView v, const Tensor& out, const Tensor& dout, const Tensor& lse,
                        const AttentionOptions& opt, Tensor* drel_bias) {
  const char* op = "attention_backward";
  AttentionBackwardParams p;
  p.fwd = forward_params(op, out, q, k, v, opt);
  const AttentionParams& f = p.fwd;
  if (drel_bias) {
    if (!opt.rel_bias) throw_value_error(op, ": drel_bias given without rel_bias");
    shape_is(op, "drel_bias", *drel_bias, opt.rel_bias->shape());
    dtype_is(op, "drel_bias", *drel_bias, DType::f32);
    same_device(op, "drel_bias", *drel_bias, out);
    p.drel_bias = drel_bias->data<float>();
  }
  if (opt.weights_out) throw_value_error(op, ": weights_out is a forward output; pass it to attention_train");
  like(op, "dout", dout, out, "out");
  check_lse(op, lse, f, out);
  const int64_t width = out.dim(2);
  check_grad_view(op, "dq", dq, f.batch, f.q_len, width, out);
  check_grad_view(op, "dk", dk, f.batch, f.kv_len, width, out);
  check_grad_view(op, "dv", dv, f.batch, f.kv_len, width, out);
  // The gradients are written while the inputs are read, tile by tile: no overlaps.
  const std::pair<MutableHeadsView, const char*> grads[] = {{dq, "dq"}, {dk, "dk"}, {dv, "dv"}};
  const std::pair<HeadsView, const char*> inputs[] = {
      {q, "q"}, {k, "k"}, {v, "v"}, {{&out, 0}, "out"}, {{&dout, 0}, "dout"}, {{&lse, 0}, "lse"}};
  for (size_t a = 0; a < 3; ++a) {
    for (size_t b = a + 1; b < 3; ++b)
      if (overlaps(*grads[a].first.tensor, grads[a].first.col, *grads[b].first.tensor, grads[b].first.col, width))
        throw_value_error(op, ": ", grads[a].second, " and ", grads[b].second, " overlap");
    for (const auto& [in, name] : inputs)
      if (overlaps(*grads[a].first.tensor, grads[a].first.col, *in.tensor, in.col, width))
        throw_value_error(op, ": ", grads[a].second, " overlaps the input ", name);
  }
  const size_t es = dtype_size(out.dtype());
  auto at = [es](MutableHeadsView g) { return static_cast<char*>(g.tensor->raw()) + g.col * es; };
  p.dout = dout.raw();
  p.dout_row_stride = width;
  p.dout_batch_stride = f.q_len * width;
  p.lse = lse.data<float>();
  p.dq = at(dq);
  p.dq_row_stride = dq.tensor->dim(2);
  p.dq_batch_stride = f.q_len * p.dq_row_stride;
  p.dk = at(dk);
  p.dk_row_stride = dk.tensor->dim(2);
  p.dk_batch_stride = f.kv_len * p.dk_row_stride;
  p.dv = at(dv);
  p.dv_row_stride = dv.tensor->dim(2);
  p.dv_batch_stride = f.kv_len * p.dv_row_stride;
  if (f.batch == 0 || width == 0) return;
  profile::Scope scope(op);
  backend_for(out.device()).run(p, out.device().index);
}

}  // namespace tformer::ops
