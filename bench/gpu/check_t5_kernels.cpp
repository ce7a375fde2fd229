// Correctness lab for the kernels T5 adds to libtformer_cuda.so, forward and backward,
// as check_backend.cpp / check_training.cpp do for the others: RMSNorm (layer_norm with
// rms, its backward), gated_act and its backward, attention with a relative position
// bias (every forward path: CUDA-core, tensor-core, decode step split or not, weights_out,
// lse_out) and its backward's drel_bias (CUDA-core and tensor-core kernels). f32/f16/bf16,
// NaN-poisoned outputs, float64 references from backend.h's definitions. Exits 1 on a failure.
//   g++ -O2 -std=c++17 -Icpp/include bench/gpu/check_t5_kernels.cpp -ldl -o /tmp/check_t5_kernels
//   /tmp/check_t5_kernels build/libtformer_cuda.so
// Without a GPU, bash bench/gpu/emulate/emulate.sh runs it on the CPU emulator.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lab_attention_reference.h"
#include "lab_check.h"
#include "lab_util.h"

using tformer::Activation;
using tformer::DType;
using lab::all_indices, lab::download_f32, lab::expect, lab::expect_throw, lab::nans, lab::report, lab::sum_tolerance;

#ifdef TFORMER_LAB_EMULATED
tformer::Backend* make_emulated_backend();  // emulate/emu_backend.cpp
namespace tformer::cuda {                   // which attention kernels run
bool attention_mma_supports(const tformer::AttentionParams& p);
bool attention_backward_mma_supported(const tformer::AttentionBackwardParams& p);
}  // namespace tformer::cuda
#endif

namespace {

std::mt19937 rng(5150);
const DType kFloatTypes[] = {DType::f32, DType::f16, DType::bf16};

// ---------------------------------------------------------------- RMSNorm

// layer_norm with rms (x + residual, sum_out, mean_out 0, rstd_out), then its backward
// from the saved rstd: ds (written or accumulated), dgamma (+=, in T or float32).
void check_rms_norm(tformer::Backend* be, DType t, int64_t rows, int64_t cols, bool accumulate, bool grad_f32) {
  const size_t n = rows * cols;
  const DType gt = grad_f32 ? DType::f32 : t;
  lab::Buffer x(be, t, n), res(be, t, n), g(be, t, cols), out(be, t, n), sum(be, t, n), dout(be, t, n), ds(be, t, n);
  lab::Buffer mean(be, DType::f32, rows), rstd(be, DType::f32, rows), dg(be, gt, cols);
  const auto hx = lab::random_values(rng, n, t, 0.5f, 2.0f), hr = lab::random_values(rng, n, t);
  const auto hg = lab::random_values(rng, cols, t, 1.0f, 0.3f), hdo = lab::random_values(rng, n, t);
  const auto hds0 = lab::random_values(rng, n, t), hdg0 = lab::random_values(rng, cols, gt);
  x.upload(hx), res.upload(hr), g.upload(hg), dout.upload(hdo), dg.upload(hdg0);
  out.upload(nans(n)), sum.upload(nans(n)), mean.upload(nans(rows)), rstd.upload(nans(rows));
  ds.upload(accumulate ? hds0 : nans(n));

  tformer::LayerNormParams f;
  f.dtype = t, f.rows = rows, f.cols = cols, f.eps = 1e-6f, f.rms = true;
  f.out = out.data(), f.sum_out = sum.data(), f.x = x.data(), f.residual = res.data(), f.gamma = g.data();
  f.mean_out = static_cast<float*>(mean.data()), f.rstd_out = static_cast<float*>(rstd.data());
  be->run(f, 0);
  const auto hsum = sum.download(), hrstd = download_f32(be, rstd.data(), rows);

  std::vector<double> ref_out(n), ref_sum(n), ref_rstd(rows), ref_ds(n), ref_dg(cols);
  for (int64_t r = 0; r < rows; ++r) {
    double sq = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      ref_sum[i] = double(hx[i]) + hr[i];
      sq += ref_sum[i] * ref_sum[i];
    }
    ref_rstd[r] = 1 / std::sqrt(sq / cols + 1e-6);
    for (int64_t c = 0; c < cols; ++c) ref_out[r * cols + c] = ref_sum[r * cols + c] * ref_rstd[r] * hg[c];
  }
  const std::string name = "rms_norm " + std::to_string(rows) + "x" + std::to_string(cols);
  report(name + " out", t, out.download(), ref_out, all_indices(n));
  report(name + " sum_out", t, hsum, ref_sum, all_indices(n));
  report(name + " rstd", t, hrstd, ref_rstd, all_indices(rows), 1e-5);
  const auto hmean = download_f32(be, mean.data(), rows);
  expect(std::all_of(hmean.begin(), hmean.end(), [](float m) { return m == 0.0f; }), name + " mean_out 0");

  tformer::LayerNormBackwardParams p;
  p.dtype = t, p.rows = rows, p.cols = cols, p.accumulate = accumulate, p.rms = true, p.grad_f32 = grad_f32;
  p.ds = ds.data(), p.dout = dout.data(), p.s = sum.data(), p.gamma = g.data(), p.dgamma = dg.data();
  p.rstd = static_cast<const float*>(rstd.data());  // mean: null (RMSNorm reads none)
  be->run(p, 0);
  // From the saved s and rstd, as the kernel sees them.
  for (int64_t c = 0; c < cols; ++c) ref_dg[c] = hdg0[c];
  for (int64_t r = 0; r < rows; ++r) {
    double sgx = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = double(hsum[r * cols + c]) * hrstd[r];
      sgx += double(hdo[r * cols + c]) * hg[c] * xhat;
      ref_dg[c] += hdo[r * cols + c] * xhat;
    }
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = double(hsum[r * cols + c]) * hrstd[r];
      ref_ds[r * cols + c] = (accumulate ? hds0[r * cols + c] : 0.0) +
                             hrstd[r] * (double(hdo[r * cols + c]) * hg[c] - xhat * sgx / cols);
    }
  }
  const std::string bname = "rms_norm_backward " + std::to_string(rows) + "x" + std::to_string(cols) +
                            (accumulate ? " accumulate" : "") + (grad_f32 ? " dgamma f32" : "");
  report(bname + " ds", t, ds.download(), ref_ds, all_indices(n));
  report(bname + " dgamma", gt, dg.download(), ref_dg, all_indices(cols), grad_f32 ? sum_tolerance(t) : 0);
}

// ---------------------------------------------------------------- gated_act

double act_value(Activation act, double x) {
  const double pi = 3.14159265358979323846;
  switch (act) {
    case Activation::relu: return std::max(x, 0.0);
    case Activation::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Activation::gelu_tanh: return 0.5 * x * (1 + std::tanh(std::sqrt(2 / pi) * (x + 0.044715 * x * x * x)));
    case Activation::silu: return x / (1 + std::exp(-x));
    default: return x;
  }
}

double act_grad(Activation act, double z) {  // from the definitions, by a central difference in float64
  const double h = 1e-6 * std::max(1.0, std::fabs(z));
  if (act == Activation::relu) return z > 0 ? 1 : 0;
  return (act_value(act, z + h) - act_value(act, z - h)) / (2 * h);
}

void check_gated_act(tformer::Backend* be, DType t, Activation act, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  lab::Buffer x(be, t, 2 * n), out(be, t, n), dy(be, t, n), dx(be, t, 2 * n);
  auto hx = lab::random_values(rng, 2 * n, t, 0.0f, 2.0f);
  hx[0] = 0.0f, hx[1] = 9.0f, hx[2] = -9.0f;  // relu at 0; the tails
  const auto hdy = lab::random_values(rng, n, t);
  x.upload(hx), dy.upload(hdy), out.upload(nans(n)), dx.upload(nans(2 * n));
  tformer::GatedActParams f;
  f.dtype = t, f.rows = rows, f.cols = cols, f.act = act, f.out = out.data(), f.x = x.data();
  be->run(f, 0);
  tformer::GatedActBackwardParams b;
  b.dtype = t, b.rows = rows, b.cols = cols, b.act = act, b.dx = dx.data(), b.dy = dy.data(), b.x = x.data();
  be->run(b, 0);
  std::vector<double> ref(n), ref_dx(2 * n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double a = hx[r * 2 * cols + c], gate = hx[r * 2 * cols + cols + c], g = hdy[r * cols + c];
      ref[r * cols + c] = act_value(act, a) * gate;
      ref_dx[r * 2 * cols + c] = g * gate * act_grad(act, a);
      ref_dx[r * 2 * cols + cols + c] = g * act_value(act, a);
    }
  const std::string name = "gated_act act=" + std::to_string(int(act)) + " " + std::to_string(rows) + "x" +
                           std::to_string(cols);
  report(name, t, out.download(), ref, all_indices(n));
  report(name + " backward dx", t, dx.download(), ref_dx, all_indices(2 * n), t == DType::f32 ? 1e-5 : 0);
}

// ---------------------------------------------------------------- attention with rel_bias

struct RelBiasCase {
  int64_t batch, heads, head_dim, q_len, kv_len;
  bool causal = false;
  int64_t offset = 0;
  bool lengths = false;  // kv_lengths: batch 0 all keys, others random (at least 1)
  int64_t margin = 0;    // extra table rows on both sides of the span the pairs use
  bool weights = false;  // weights_out too
};

// q, k, v, out, dout: separate (batch, len, heads * head_dim) buffers (16-byte aligned rows
// when heads * head_dim % 8 == 0: the tensor-core kernels for half types). The table covers
// j - i in [-(q_len - 1) - margin, kv_len - 1 + margin]. Forward (out, lse, weights), then
// the backward (dq, dk, dv, drel_bias accumulated onto random values).
void check_rel_bias(tformer::Backend* be, DType t, const RelBiasCase& c, bool backward) {
  const int64_t hw = c.heads * c.head_dim, D = c.head_dim;
  const int64_t origin = c.q_len - 1 + c.margin, span = c.q_len + c.kv_len - 1 + 2 * c.margin;
  lab::Buffer q(be, t, c.batch * c.q_len * hw), k(be, t, c.batch * c.kv_len * hw), v(be, t, k.size());
  lab::Buffer out(be, t, q.size()), dout(be, t, q.size()), dq(be, t, q.size()), dk(be, t, k.size()), dv(be, t, k.size());
  lab::Buffer bias(be, t, span * c.heads), drel(be, DType::f32, span * c.heads), kvl(be, DType::i32, c.batch);
  lab::Buffer lse(be, DType::f32, c.batch * c.heads * c.q_len), w(be, DType::f32, c.batch * c.q_len * c.kv_len);
  const auto hq = lab::random_values(rng, q.size(), t), hk = lab::random_values(rng, k.size(), t);
  const auto hv = lab::random_values(rng, v.size(), t), hdo = lab::random_values(rng, dout.size(), t);
  const auto hbias = lab::random_values(rng, bias.size(), t, 0.0f, 2.0f);
  const auto hdrel0 = lab::random_values(rng, drel.size(), DType::f32);
  std::vector<int32_t> hl(c.batch);
  for (int64_t b = 0; b < c.batch; ++b)
    hl[b] = !c.lengths || b == 0 ? int32_t(c.kv_len) : int32_t(1 + rng() % c.kv_len);
  q.upload(hq), k.upload(hk), v.upload(hv), dout.upload(hdo), bias.upload(hbias), drel.upload(hdrel0);
  kvl.upload_i32(hl), out.upload(nans(out.size())), lse.upload(nans(lse.size())), w.upload(nans(w.size()));
  dq.upload(nans(dq.size())), dk.upload(nans(dk.size())), dv.upload(nans(dv.size()));

  tformer::AttentionParams f;
  f.dtype = t, f.batch = c.batch, f.heads = c.heads, f.head_dim = D, f.q_len = c.q_len, f.kv_len = c.kv_len;
  f.q = q.data(), f.k = k.data(), f.v = v.data(), f.out = out.data();
  f.q_batch_stride = f.out_batch_stride = c.q_len * hw, f.k_batch_stride = f.v_batch_stride = c.kv_len * hw;
  f.q_row_stride = f.k_row_stride = f.v_row_stride = f.out_row_stride = hw;
  f.kv_lengths = c.lengths ? static_cast<const int32_t*>(kvl.data()) : nullptr;
  f.causal = c.causal, f.causal_offset = c.offset, f.scale = D == 32 ? 1.0f : float(1 / std::sqrt(double(D)));  // T5's 1 once
  f.lse_out = static_cast<float*>(lse.data()), f.weights_out = c.weights ? static_cast<float*>(w.data()) : nullptr;
  f.rel_bias = bias.data(), f.rel_bias_origin = origin, f.rel_bias_span = span;
  char name[160];
  std::snprintf(name, sizeof name, "rel_bias attention B%ld H%ld D%ld q%ld kv%ld%s%s%s%s", long(c.batch),
                long(c.heads), long(D), long(c.q_len), long(c.kv_len),
                c.causal ? (" causal" + std::to_string(c.offset)).c_str() : "", c.lengths ? " kv_lengths" : "",
                c.margin ? " margin" : "", c.weights ? " weights" : "");
#ifdef TFORMER_LAB_EMULATED
  const bool mma = c.q_len > 1 && tformer::cuda::attention_mma_supports(f);
  std::printf("     %s %s: %s path\n", name, tformer::dtype_name(t),
              c.q_len == 1 ? "decode" : mma ? "tensor-core" : "CUDA-core");
#endif
  be->run(f, 0);

  lab::MaskedAttention mask{D, c.kv_len, 1, hl.data(), c.causal, c.offset, f.scale};
  mask.rel_bias = hbias.data(), mask.rel_bias_origin = origin, mask.heads = c.heads;
  const lab::HostRows qh{hq.data(), c.q_len * hw, hw}, kh{hk.data(), c.kv_len * hw, hw}, vh{hv.data(), c.kv_len * hw, hw};
  std::vector<double> ref_out(out.size()), ref_lse(lse.size()), ref_w(w.size(), 0.0);
  std::vector<double> ref_dq(dq.size(), 0.0), ref_dk(dk.size(), 0.0), ref_dv(dv.size(), 0.0), ref_drel(drel.size());
  for (size_t x = 0; x < ref_drel.size(); ++x) ref_drel[x] = hdrel0[x];
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.q_len; ++i) {
        const lab::AttentionRow row = lab::attention_row(mask, qh, kh, b, h, i);
        const std::vector<double> o = lab::attention_output(row, vh, h, D);
        const int64_t at = (b * c.q_len + i) * hw + h * D;
        for (int64_t d = 0; d < D; ++d) ref_out[at + d] = o[d];
        ref_lse[(b * c.heads + h) * c.q_len + i] = row.lse;
        const float* dy = &hdo[at];
        double delta = 0;
        for (int64_t d = 0; d < D; ++d) delta += dy[d] * o[d];
        for (size_t m = 0; m < row.keys.size(); ++m) {
          const int64_t j = row.keys[m];
          ref_w[(b * c.q_len + i) * c.kv_len + j] += row.prob[m] / c.heads;
          const float* kj = kh.at(b, j, h, D);
          const float* vj = vh.at(b, j, h, D);
          double dp = 0;
          for (int64_t d = 0; d < D; ++d) dp += dy[d] * double(vj[d]);
          const double ds = row.prob[m] * (dp - delta);  // d loss / d score
          ref_drel[(origin + j - i) * c.heads + h] += ds;
          const int64_t kat = (b * c.kv_len + j) * hw + h * D;
          for (int64_t d = 0; d < D; ++d) {
            ref_dq[at + d] += ds * f.scale * kj[d];
            ref_dk[kat + d] += ds * f.scale * qh.at(b, i, h, D)[d];
            ref_dv[kat + d] += row.prob[m] * dy[d];
          }
        }
      }
  report(std::string(name) + " out", t, out.download(), ref_out, all_indices(out.size()));
  report(std::string(name) + " lse", t, lse.download(), ref_lse, all_indices(lse.size()), 1e-5);
  if (c.weights) report(std::string(name) + " weights_out", t, w.download(), ref_w, all_indices(w.size()), 1e-5);
  if (!backward) return;

  tformer::AttentionBackwardParams p;
  p.fwd = f, p.fwd.lse_out = nullptr, p.fwd.weights_out = nullptr;
  p.dout = dout.data(), p.dout_batch_stride = c.q_len * hw, p.dout_row_stride = hw;
  p.lse = static_cast<const float*>(lse.data());
  p.dq = dq.data(), p.dq_batch_stride = c.q_len * hw, p.dq_row_stride = hw;
  p.dk = dk.data(), p.dv = dv.data(), p.dk_batch_stride = p.dv_batch_stride = c.kv_len * hw;
  p.dk_row_stride = p.dv_row_stride = hw;
  p.drel_bias = static_cast<float*>(drel.data());
#ifdef TFORMER_LAB_EMULATED
  std::printf("     %s %s backward: %s path\n", name, tformer::dtype_name(t),
              tformer::cuda::attention_backward_mma_supported(p) ? "tensor-core" : "CUDA-core");
#endif
  be->run(p, 0);
  const std::string bname = std::string(name) + " backward";
  report(bname + " dq", t, dq.download(), ref_dq, all_indices(dq.size()), sum_tolerance(t));
  report(bname + " dk", t, dk.download(), ref_dk, all_indices(dk.size()), sum_tolerance(t));
  report(bname + " dv", t, dv.download(), ref_dv, all_indices(dv.size()), sum_tolerance(t));
  report(bname + " drel_bias (+=)", DType::f32, download_f32(be, drel.data(), drel.size()), ref_drel,
         all_indices(drel.size()), sum_tolerance(t));
}

void check_rel_bias_cases(tformer::Backend* be, DType t, bool half_only_paths) {
  // Prefill / encoder (bidirectional), decoder teacher forcing (causal), both with several tiles.
  check_rel_bias(be, t, {2, 3, 64, 37, 37}, true);
  check_rel_bias(be, t, {2, 2, 64, 70, 70, true, 0, true}, true);
  check_rel_bias(be, t, {1, 2, 32, 20, 70, true, 50, false, 3}, true);  // chunked prefill, a wider table
  check_rel_bias(be, t, {2, 2, 64, 5, 9, false, 0, true, 0, true}, true);  // + weights_out
  if (half_only_paths) return;
  check_rel_bias(be, t, {2, 2, 36, 33, 40, true, 7}, true);  // head_dim 36: the CUDA-core kernels in every dtype
  // Decode steps (q_len 1): split along the keys (few blocks for the GPU), and in one pass
  // (the emulator told of 1 multiprocessor).
  check_rel_bias(be, t, {3, 2, 64, 1, 300, true, 299, false, 5}, false);
#ifdef TFORMER_LAB_EMULATED
  setenv("EMU_SM_COUNT", "1", 1);
  check_rel_bias(be, t, {3, 2, 64, 1, 300, true, 299, false, 5}, false);
  unsetenv("EMU_SM_COUNT");
#endif
  check_rel_bias(be, t, {1, 1, 64, 1, 700, true, 699, false, 0, true}, false);
  check_rel_bias(be, t, {2, 2, 40, 1, 90, false, 0, true}, false);  // unaligned rows: scalar loads
}

void check_errors(tformer::Backend* be) {
  tformer::LayerNormParams f;
  alignas(16) static float mem[16];
  f.rows = f.cols = 1, f.rms = true, f.out = mem, f.x = f.gamma = f.beta = mem;
  expect_throw("layer_norm rms with beta", [&] { be->run(f, 0); }, "beta");
  tformer::LayerNormBackwardParams b;
  b.rows = b.cols = 1, b.rms = true, b.ds = b.dbeta = mem, b.dout = b.s = b.gamma = mem, b.rstd = mem;
  expect_throw("layer_norm_backward rms with dbeta", [&] { be->run(b, 0); }, "dbeta");
  tformer::GatedActParams g;
  g.dtype = DType::i32, g.rows = g.cols = 1;
  expect_throw("gated_act int32", [&] { be->run(g, 0); }, "int32");
#ifdef TFORMER_LAB_EMULATED
  tformer::AttentionBackwardParams a;
  a.fwd.dtype = DType::bf16, a.fwd.batch = a.fwd.heads = a.fwd.q_len = a.fwd.kv_len = 1, a.fwd.head_dim = 64;
  a.fwd.q = a.fwd.k = a.fwd.v = a.dout = mem, a.dq = a.dk = a.dv = mem, a.fwd.rel_bias = mem, a.fwd.scale = 0.0f;
  expect(!tformer::cuda::attention_backward_mma_supported(a), "attention_backward rel_bias, scale 0: CUDA-core path");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  try {
#ifdef TFORMER_LAB_EMULATED
    tformer::Backend* be = make_emulated_backend();
#else
    tformer::Backend* be = lab::load_backend(argc > 1 ? argv[1] : "libtformer_cuda.so");
#endif
    std::printf("%s\n", be->name().c_str());
    for (DType t : kFloatTypes) {
      for (int64_t cols : {3, 64, 1000}) check_rms_norm(be, t, 37, cols, false, false);  // (1 column: ds ~ 0)
      check_rms_norm(be, t, 300, 96, true, false);
      if (t != DType::f32) check_rms_norm(be, t, 80, 96, false, true);  // mixed precision: dgamma float32
      for (int act = 0; act <= 4; ++act) check_gated_act(be, t, Activation(act), 37, 300);
      check_gated_act(be, t, Activation::gelu_tanh, 1, 1);
      check_rel_bias_cases(be, t, false);
    }
    check_errors(be);
    return lab::finish(be);
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 2;
  }
}
