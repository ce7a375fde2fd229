// Correctness lab for the training kernels of libtformer_cuda.so (backend.h's
// "training kernels"), as check_backend.cpp does for the forward ones: f32/f16/bf16,
// fresh random data with odd sizes, NaN-poisoned outputs, float64 references written
// from backend.h's definitions (the CPU backend's semantics: accumulate flags,
// aliasing, ignore_index, skip_id, grad_scale); dropout's mask and AdamW's update
// bit-exact against the CPU's formulas (cpp/include/tformer/random.h, adamw.cpp's rounding
// order); the statistics the forward saves for training (layer_norm mean/rstd,
// attention lse); determinism of the reductions; the error paths. Exits 1 on a failure.
//   g++ -O2 -std=c++17 -Icpp/include bench/gpu/check_training.cpp -ldl -o /tmp/check_training
//   /tmp/check_training build/libtformer_cuda.so
// Without a GPU, bash bench/gpu/emulate/emulate.sh runs it on the CPU emulator.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "lab_attention_reference.h"
#include "lab_check.h"
#include "lab_util.h"
#include "tformer/random.h"

using tformer::Activation;
using tformer::DType;
using lab::all_indices, lab::download_f32, lab::expect, lab::expect_throw, lab::nans, lab::report, lab::sum_tolerance;

#ifdef TFORMER_LAB_EMULATED
tformer::Backend* make_emulated_backend();  // emulate/emu_backend.cpp
namespace tformer::cuda {  // cuda/train_attention_mma.cu: which attention backward runs
bool attention_backward_mma_supported(const tformer::AttentionBackwardParams& p);
}
#endif

namespace {

std::mt19937 rng(4321);
const DType kFloatTypes[] = {DType::f32, DType::f16, DType::bf16};

// ---------------------------------------------------------------- layer norm

// Forward with mean_out / rstd_out, then the backward from those statistics.
// accumulate: ds += instead of =; alias: ds is dout's buffer; params: dgamma / dbeta
// given (with nonzero values, since they accumulate).
void check_layer_norm_backward(tformer::Backend* be, DType t, int64_t rows, int64_t cols, bool accumulate,
                               bool alias, bool params) {
  const size_t n = rows * cols;
  lab::Buffer s(be, t, n), g(be, t, cols), bt(be, t, cols), out(be, t, n), dout(be, t, n), ds(be, t, n);
  lab::Buffer mean(be, DType::f32, rows), rstd(be, DType::f32, rows), dg(be, t, cols), db(be, t, cols);
  const auto hs = lab::random_values(rng, n, t, 3.0f, 2.0f), hg = lab::random_values(rng, cols, t, 1.0f, 0.3f);
  const auto hbt = lab::random_values(rng, cols, t), hdo = lab::random_values(rng, n, t);
  const auto hds0 = lab::random_values(rng, n, t), hdg0 = lab::random_values(rng, cols, t);
  const auto hdb0 = lab::random_values(rng, cols, t);
  s.upload(hs), g.upload(hg), bt.upload(hbt), dout.upload(hdo), dg.upload(hdg0), db.upload(hdb0);
  ds.upload(accumulate ? hds0 : nans(n)), mean.upload(nans(rows)), rstd.upload(nans(rows));
  if (alias && accumulate) dout.upload(hdo);  // ds = dout's buffer: accumulate adds onto dout itself

  tformer::LayerNormParams f;
  f.dtype = t, f.rows = rows, f.cols = cols, f.eps = 1e-5f, f.out = out.data(), f.x = s.data();
  f.gamma = g.data(), f.beta = bt.data();
  f.mean_out = static_cast<float*>(mean.data()), f.rstd_out = static_cast<float*>(rstd.data());
  be->run(f, 0);
  const auto hmean = download_f32(be, mean.data(), rows), hrstd = download_f32(be, rstd.data(), rows);

  std::vector<double> ref_mean(rows), ref_rstd(rows);
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int64_t c = 0; c < cols; ++c) m += hs[r * cols + c];
    m /= cols;
    for (int64_t c = 0; c < cols; ++c) v += (hs[r * cols + c] - m) * (hs[r * cols + c] - m);
    ref_mean[r] = m, ref_rstd[r] = 1 / std::sqrt(v / cols + 1e-5);
  }
  char name[128];
  std::snprintf(name, sizeof name, "layer_norm_backward %ldx%ld%s%s%s", long(rows), long(cols),
                accumulate ? " accumulate" : "", alias ? " ds=dout" : "", params ? " +dgamma,dbeta" : "");
  if (!accumulate && !alias && params) {  // once per shape: the saved statistics (fp32 in every dtype)
    report(std::string(name) + " fwd mean", t, hmean, ref_mean, all_indices(rows), 1e-5);
    report(std::string(name) + " fwd rstd", t, hrstd, ref_rstd, all_indices(rows), 1e-5);
  }

  tformer::LayerNormBackwardParams p;
  p.dtype = t, p.rows = rows, p.cols = cols, p.accumulate = accumulate;
  p.ds = alias ? dout.data() : ds.data(), p.dout = dout.data(), p.s = s.data(), p.gamma = g.data();
  p.mean = static_cast<const float*>(mean.data()), p.rstd = static_cast<const float*>(rstd.data());
  if (params) p.dgamma = dg.data(), p.dbeta = db.data();
  be->run(p, 0);

  // References from the saved (float) statistics, as the kernel sees them.
  std::vector<double> ref_ds(n), ref_dg(cols), ref_db(cols);
  for (int64_t c = 0; c < cols; ++c) ref_dg[c] = hdg0[c], ref_db[c] = hdb0[c];
  for (int64_t r = 0; r < rows; ++r) {
    double sg = 0, sgx = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (double(hs[r * cols + c]) - hmean[r]) * hrstd[r], gg = double(hdo[r * cols + c]) * hg[c];
      sg += gg, sgx += gg * xhat;
      ref_dg[c] += hdo[r * cols + c] * xhat, ref_db[c] += hdo[r * cols + c];
    }
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (double(hs[r * cols + c]) - hmean[r]) * hrstd[r];
      const double v = hrstd[r] * (double(hdo[r * cols + c]) * hg[c] - sg / cols - xhat * sgx / cols);
      const double base = accumulate ? (alias ? hdo[r * cols + c] : hds0[r * cols + c]) : 0.0;
      ref_ds[r * cols + c] = base + v;
    }
  }
  report(std::string(name) + " ds", t, (alias ? dout : ds).download(), ref_ds, all_indices(n));
  if (params) {
    report(std::string(name) + " dgamma", t, dg.download(), ref_dg, all_indices(cols));
    report(std::string(name) + " dbeta", t, db.download(), ref_db, all_indices(cols));
  } else {
    expect(dg.download() == [&] { lab::Buffer tmp(be, t, cols); tmp.upload(hdg0); return tmp.download(); }(),
           std::string(name) + " dgamma untouched");
  }
}

// ---------------------------------------------------------------- element-wise

double activation_grad(Activation act, double z) {
  const double pi = 3.14159265358979323846;
  switch (act) {
    case Activation::relu: return z > 0 ? 1 : 0;
    case Activation::gelu: return 0.5 * (1 + std::erf(z / std::sqrt(2.0))) + z * std::exp(-0.5 * z * z) / std::sqrt(2 * pi);
    case Activation::gelu_tanh: {
      const double k = std::sqrt(2 / pi), u = k * (z + 0.044715 * z * z * z), th = std::tanh(u);
      return 0.5 * (1 + th) + 0.5 * z * (1 - th * th) * k * (1 + 3 * 0.044715 * z * z);
    }
    case Activation::silu: {
      const double s = 1 / (1 + std::exp(-z));
      return s * (1 + z * (1 - s));
    }
    default: return 1;
  }
}

void check_bias_act_backward(tformer::Backend* be, DType t, Activation act, bool in_place) {
  const int64_t n = 10007;
  lab::Buffer dy(be, t, n), z(be, t, n), dz(be, t, n);
  auto hz = lab::random_values(rng, n, t, 0.0f, 3.0f);
  hz[0] = 0.0f, hz[1] = 12.0f, hz[2] = -12.0f;  // relu at 0; the tails of silu / gelu_tanh
  const auto hdy = lab::random_values(rng, n, t);
  dy.upload(hdy), z.upload(hz), dz.upload(nans(n));
  tformer::BiasActBackwardParams p;
  p.dtype = t, p.n = n, p.act = act, p.dz = in_place ? dy.data() : dz.data(), p.dy = dy.data(), p.z = z.data();
  be->run(p, 0);
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) ref[i] = hdy[i] * activation_grad(act, hz[i]);
  report("bias_act_backward act=" + std::to_string(int(act)) + (in_place ? " dz=dy" : ""), t,
         (in_place ? dy : dz).download(), ref, all_indices(n));
}

void check_dropout(tformer::Backend* be, DType t, int64_t n, float prob, uint64_t seed, uint64_t offset, bool in_place) {
  lab::Buffer x(be, t, n), out(be, t, n);
  const auto hx = lab::random_values(rng, n, t);
  x.upload(hx), out.upload(nans(n));
  tformer::DropoutParams p;
  p.dtype = t, p.n = n, p.p = prob, p.seed = seed, p.offset = offset;
  p.out = in_place ? x.data() : out.data(), p.x = x.data();
  be->run(p, 0);
  const auto got = (in_place ? x : out).download();
  // The CPU kernel's definition: keep when dropout_draw(key, offset + i) >= p, then
  // x * float(1 / (1 - p)) rounded to the dtype.
  const uint64_t key = tformer::rng::dropout_key(seed);
  const float scale = prob < 1.0f ? 1.0f / (1.0f - prob) : 0.0f;
  int64_t wrong = 0, kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = tformer::rng::dropout_draw(key, offset + uint64_t(i)) >= prob;
    kept += keep;
    const float want = keep ? lab::round_to(t, hx[i] * scale) : 0.0f;
    wrong += !(got[i] == want);  // NaN fails
  }
  char name[128];
  std::snprintf(name, sizeof name, "dropout n%ld p%.2f seed %lu offset %lu%s", long(n), prob, (unsigned long)seed,
                (unsigned long)offset, in_place ? " in place" : "");
  expect(wrong == 0, std::string(name) + " " + tformer::dtype_name(t),
         std::to_string(wrong) + " element(s) differ from the CPU formula, kept " + std::to_string(kept));
}

// The CPU kernel's AdamW step (cpp/ops/kernels/adamw.cpp), scalar, in the same order.
struct HostAdamW {
  float gs, decay, w1, one_minus_w1, b2, w2, step_size, bc2_sqrt, eps;
  bool decayed, small_w1;
  explicit HostAdamW(const tformer::AdamWParams& p) {
    const double step = double(p.step);
    gs = p.grad_scale, decayed = p.weight_decay != 0.0, decay = float(1.0 - p.lr * p.weight_decay);
    w1 = float(1.0 - p.beta1), small_w1 = std::fabs(w1) < 0.5f, one_minus_w1 = 1.0f - w1;
    b2 = float(p.beta2), w2 = float(1.0 - p.beta2);
    step_size = float(p.lr / (1.0 - std::pow(p.beta1, step)));
    bc2_sqrt = float(std::sqrt(1.0 - std::pow(p.beta2, step))), eps = float(p.eps);
  }
  void update(float& param, float& m, float& v, float grad) const {
    volatile float g = grad * gs;  // volatile: one rounding per operation, no contraction
    volatile float w = decayed ? param * decay : param;
    if (small_w1) {
      volatile float d = g - m, e = w1 * d;
      m = m + e;
    } else {
      volatile float d = g - m, e = d * one_minus_w1;
      m = g - e;
    }
    volatile float vb = v * b2, wg = w2 * g, wgg = wg * g;
    v = vb + wgg;
    volatile float root = std::sqrt(v), den0 = root / bc2_sqrt, den = den0 + eps, num = -step_size * m, q = num / den;
    param = w + q;
  }
};

void check_adamw(tformer::Backend* be, double lr, double beta1, double wd, int64_t step, float grad_scale) {
  const int64_t n = 100003;
  lab::Buffer param(be, DType::f32, n), grad(be, DType::f32, n), m(be, DType::f32, n), v(be, DType::f32, n);
  auto hp = lab::random_values(rng, n, DType::f32), hg = lab::random_values(rng, n, DType::f32);
  auto hm = lab::random_values(rng, n, DType::f32, 0.0f, 0.1f), hv = lab::random_values(rng, n, DType::f32, 0.0f, 0.1f);
  for (auto& x : hv) x = x * x;
  param.upload(hp), grad.upload(hg), m.upload(hm), v.upload(hv);
  tformer::AdamWParams p;
  p.n = n, p.lr = lr, p.beta1 = beta1, p.beta2 = 0.999, p.eps = 1e-8, p.weight_decay = wd, p.step = step;
  p.grad_scale = grad_scale;
  p.param = static_cast<float*>(param.data()), p.grad = static_cast<const float*>(grad.data());
  p.m = static_cast<float*>(m.data()), p.v = static_cast<float*>(v.data());
  be->run(p, 0);
  const auto gp = param.download(), gm = m.download(), gv = v.download();
  const HostAdamW host(p);
  int64_t wrong = 0;
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) {
    float pp = hp[i], mm = hm[i], vv = hv[i];
    host.update(pp, mm, vv, hg[i]);
    wrong += !(gp[i] == pp && gm[i] == mm && gv[i] == vv);
    // float64 torch formula, for the tolerance check
    const double g = double(hg[i]) * grad_scale, w = hp[i] * (1 - lr * wd);
    const double m1 = beta1 * hm[i] + (1 - beta1) * g, v1 = 0.999 * hv[i] + 0.001 * g * g;
    ref[i] = w - lr / (1 - std::pow(beta1, double(step))) * m1 /
                     (std::sqrt(v1) / std::sqrt(1 - std::pow(0.999, double(step))) + 1e-8);
  }
  char name[128];
  std::snprintf(name, sizeof name, "adamw n%ld lr %g beta1 %g wd %g step %ld grad_scale %g", long(n), lr, beta1, wd,
                long(step), grad_scale);
  expect(wrong == 0, std::string(name) + " bit-exact vs CPU order", std::to_string(wrong) + " element(s) differ");
  report(std::string(name) + " vs float64", DType::f32, gp, ref, all_indices(n), 1e-6);
}

// ---------------------------------------------------------------- reductions

void check_sum_rows(tformer::Backend* be, DType t, int64_t rows, int64_t cols) {
  lab::Buffer x(be, t, rows * cols), out(be, t, cols);
  const auto hx = lab::random_values(rng, x.size(), t), h0 = lab::random_values(rng, cols, t);
  x.upload(hx), out.upload(h0);
  tformer::SumRowsParams p;
  p.dtype = t, p.rows = rows, p.cols = cols, p.out = out.data(), p.x = x.data();
  be->run(p, 0);
  const auto first = out.download();
  std::vector<double> ref(cols);
  for (int64_t c = 0; c < cols; ++c) {
    ref[c] = h0[c];
    for (int64_t r = 0; r < rows; ++r) ref[c] += hx[r * cols + c];
  }
  report("sum_rows " + std::to_string(rows) + "x" + std::to_string(cols) + " (+=)", t, first, ref, all_indices(cols),
         t == DType::f32 ? 1e-5 : 0);
  out.upload(h0);
  be->run(p, 0);
  expect(out.download_bytes() == [&] { lab::Buffer b(be, t, cols); b.upload(first); return b.download_bytes(); }(),
         "sum_rows " + std::to_string(rows) + "x" + std::to_string(cols) + " deterministic " + tformer::dtype_name(t));
}

void check_sum_squares(tformer::Backend* be, DType t, int64_t n) {
  lab::Buffer x(be, t, n);
  const auto hx = lab::random_values(rng, n, t);
  x.upload(hx);
  tformer::SumSquaresParams p;
  p.dtype = t, p.n = n, p.x = x.data();
  const double a = be->run(p, 0), b = be->run(p, 0);
  double ref = 0;
  for (float v : hx) ref += double(v) * v;
  const double err = std::fabs(a - ref) / std::max(ref, 1e-300);
  char detail[96];
  std::snprintf(detail, sizeof detail, "rel err %.2e%s", err, a == b ? "" : " (two calls differ)");
  expect(err <= 1e-11 && a == b, "sum_squares n" + std::to_string(n) + " " + tformer::dtype_name(t), detail);
}

// ---------------------------------------------------------------- losses, embeddings

// alias: dlogits = logits' buffer; dlogits null when !grad.
void check_cross_entropy(tformer::Backend* be, DType t, int64_t rows, int64_t vocab, float eps, bool grad, bool alias) {
  lab::Buffer logits(be, t, rows * vocab), dl(be, t, rows * vocab), loss(be, DType::f32, rows), labels(be, DType::i32, rows);
  const auto hx = lab::random_values(rng, logits.size(), t, 0.0f, 3.0f);
  std::vector<int32_t> hl(rows);
  const int32_t ignore = -100;
  for (int64_t r = 0; r < rows; ++r) hl[r] = r % 5 == 3 ? ignore : int32_t(rng() % vocab);
  hl[0] = int32_t(vocab - 1);
  logits.upload(hx), dl.upload(nans(dl.size())), loss.upload(nans(rows)), labels.upload_i32(hl);
  tformer::CrossEntropyParams p;
  p.dtype = t, p.rows = rows, p.vocab = vocab, p.smoothing = eps, p.ignore_index = ignore, p.grad_scale = 0.37f;
  p.loss = static_cast<float*>(loss.data()), p.logits = logits.data(), p.labels = static_cast<const int32_t*>(labels.data());
  if (grad) p.dlogits = alias ? logits.data() : dl.data();
  be->run(p, 0);
  std::vector<double> ref_loss(rows), ref_grad(rows * vocab);
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = &hx[r * vocab];
    if (hl[r] == ignore) {
      ref_loss[r] = 0;
      for (int64_t c = 0; c < vocab; ++c) ref_grad[r * vocab + c] = 0;
      continue;
    }
    double m = -INFINITY, sum = 0, sum_x = 0;
    for (int64_t c = 0; c < vocab; ++c) m = std::max(m, double(x[c]));
    for (int64_t c = 0; c < vocab; ++c) sum += std::exp(x[c] - m), sum_x += x[c];
    const double lse = m + std::log(sum), e = eps;  // all in double
    ref_loss[r] = (1 - e) * (lse - x[hl[r]]) + e * (lse - sum_x / double(vocab));
    for (int64_t c = 0; c < vocab; ++c)
      ref_grad[r * vocab + c] = (std::exp(x[c] - lse) - e / double(vocab) - (c == hl[r] ? 1 - e : 0.0)) * 0.37;
  }
  char name[128];
  std::snprintf(name, sizeof name, "cross_entropy %ldx%ld eps %.1f%s", long(rows), long(vocab), eps,
                grad ? (alias ? " dlogits=logits" : " +dlogits") : "");
  report(std::string(name) + " loss", t, loss.download(), ref_loss, all_indices(rows), 1e-5);  // fp32 statistics
  if (grad) report(std::string(name) + " dlogits", t, (alias ? logits : dl).download(), ref_grad, all_indices(ref_grad.size()));
}

void check_embedding_backward(tformer::Backend* be, DType t, bool positions, bool table) {
  const int64_t rows = 301, dim = 200, vocab = 23, max_pos = 17;
  const int32_t skip = 5;
  lab::Buffer dout(be, t, rows * dim), dt(be, t, vocab * dim), dp(be, t, max_pos * dim);
  lab::Buffer ids(be, DType::i32, rows), pos_ids(be, DType::i32, rows);
  const auto hdo = lab::random_values(rng, dout.size(), t), ht0 = lab::random_values(rng, dt.size(), t);
  const auto hp0 = lab::random_values(rng, dp.size(), t);
  std::vector<int32_t> hi(rows), hpi(rows);
  // A skipped row's position id is never checked by the core: out of range here, and
  // its table row must not even be read.
  for (int64_t r = 0; r < rows; ++r) hi[r] = int32_t(rng() % vocab), hpi[r] = hi[r] == skip ? 1000000 : int32_t(rng() % max_pos);
  dout.upload(hdo), dt.upload(ht0), dp.upload(hp0), ids.upload_i32(hi), pos_ids.upload_i32(hpi);
  tformer::EmbeddingBackwardParams p;
  p.dtype = t, p.rows = rows, p.dim = dim, p.scale = 1.5f, p.skip_id = skip, p.dout = dout.data();
  p.ids = static_cast<const int32_t*>(ids.data());
  if (table) p.dtable = dt.data();
  if (positions) p.dpositions = dp.data(), p.position_ids = static_cast<const int32_t*>(pos_ids.data());
  be->run(p, 0);
  std::vector<double> ref_t(ht0.begin(), ht0.end()), ref_p(hp0.begin(), hp0.end());
  for (int64_t r = 0; r < rows; ++r) {
    if (hi[r] == skip) continue;
    for (int64_t c = 0; c < dim; ++c) {
      ref_t[hi[r] * dim + c] += 1.5 * hdo[r * dim + c];
      ref_p[hpi[r] * dim + c] += hdo[r * dim + c];
    }
  }
  const std::string name = std::string("embedding_backward skip_id") + (table ? " dtable" : "") +
                           (positions ? " dpositions" : "");
  const auto got_t = dt.download(), got_p = dp.download();
  if (table) report(name + " dtable", t, got_t, ref_t, all_indices(ref_t.size()));
  if (positions) report(name + " dpositions", t, got_p, ref_p, all_indices(ref_p.size()));
  // Deterministic (sorted runs, no atomics): the same bits again.
  dt.upload(ht0), dp.upload(hp0);
  be->run(p, 0);
  expect(dt.download() == got_t && dp.download() == got_p, name + " deterministic " + tformer::dtype_name(t));
}

// ---------------------------------------------------------------- mixed precision
// Half-precision values with float32 parameter gradients (grad_f32, GemmParams::c_f32)
// and AdamW's rounded half copy of the weights (param_half). The references are float64
// sums of the half inputs' exact values: only float32 accumulation remains (1e-5).

void check_sum_rows_f32_grad(tformer::Backend* be, DType t, int64_t rows, int64_t cols) {
  lab::Buffer x(be, t, rows * cols), out(be, DType::f32, cols);
  const auto hx = lab::random_values(rng, x.size(), t), h0 = lab::random_values(rng, cols, DType::f32);
  x.upload(hx), out.upload(h0);
  tformer::SumRowsParams p;
  p.dtype = t, p.grad_f32 = true, p.rows = rows, p.cols = cols, p.out = out.data(), p.x = x.data();
  be->run(p, 0);
  std::vector<double> ref(h0.begin(), h0.end());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ref[c] += hx[r * cols + c];
  report("sum_rows " + std::to_string(rows) + "x" + std::to_string(cols) + " float32 out (+=)", t, out.download(), ref,
         all_indices(cols), 1e-5);
}

void check_layer_norm_f32_grads(tformer::Backend* be, DType t, int64_t rows, int64_t cols) {
  const size_t n = rows * cols;
  lab::Buffer s(be, t, n), g(be, t, cols), dout(be, t, n), ds(be, t, n);
  lab::Buffer mean(be, DType::f32, rows), rstd(be, DType::f32, rows), dg(be, DType::f32, cols), db(be, DType::f32, cols);
  const auto hs = lab::random_values(rng, n, t, 1.0f, 2.0f), hg = lab::random_values(rng, cols, t, 1.0f, 0.3f);
  const auto hdo = lab::random_values(rng, n, t);
  const auto hdg0 = lab::random_values(rng, cols, DType::f32), hdb0 = lab::random_values(rng, cols, DType::f32);
  std::vector<float> hmean(rows), hrstd(rows);
  for (int64_t r = 0; r < rows; ++r) hmean[r] = 1.0f + 0.01f * r, hrstd[r] = 0.5f + 0.001f * r;  // any saved stats
  s.upload(hs), g.upload(hg), dout.upload(hdo), dg.upload(hdg0), db.upload(hdb0), mean.upload(hmean), rstd.upload(hrstd);
  tformer::LayerNormBackwardParams p;
  p.dtype = t, p.grad_f32 = true, p.rows = rows, p.cols = cols, p.ds = ds.data(), p.dout = dout.data();
  p.s = s.data(), p.gamma = g.data(), p.dgamma = dg.data(), p.dbeta = db.data();
  p.mean = static_cast<const float*>(mean.data()), p.rstd = static_cast<const float*>(rstd.data());
  be->run(p, 0);
  std::vector<double> ref_dg(hdg0.begin(), hdg0.end()), ref_db(hdb0.begin(), hdb0.end());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (double(hs[r * cols + c]) - hmean[r]) * hrstd[r];
      ref_dg[c] += hdo[r * cols + c] * xhat, ref_db[c] += hdo[r * cols + c];
    }
  const std::string name = "layer_norm_backward " + std::to_string(rows) + "x" + std::to_string(cols);
  report(name + " float32 dgamma", t, dg.download(), ref_dg, all_indices(cols), 1e-5);
  report(name + " float32 dbeta", t, db.download(), ref_db, all_indices(cols), 1e-5);
}

void check_embedding_backward_f32(tformer::Backend* be, DType t) {
  const int64_t rows = 97, dim = 40, vocab = 11, max_pos = 9;
  lab::Buffer dout(be, t, rows * dim), dt(be, DType::f32, vocab * dim), dp(be, DType::f32, max_pos * dim);
  lab::Buffer ids(be, DType::i32, rows), pos_ids(be, DType::i32, rows);
  const auto hdo = lab::random_values(rng, dout.size(), t);
  const auto ht0 = lab::random_values(rng, dt.size(), DType::f32), hp0 = lab::random_values(rng, dp.size(), DType::f32);
  std::vector<int32_t> hi(rows), hpi(rows);
  for (int64_t r = 0; r < rows; ++r) hi[r] = int32_t(rng() % vocab), hpi[r] = int32_t(rng() % max_pos);
  dout.upload(hdo), dt.upload(ht0), dp.upload(hp0), ids.upload_i32(hi), pos_ids.upload_i32(hpi);
  tformer::EmbeddingBackwardParams p;
  p.dtype = t, p.grad_f32 = true, p.rows = rows, p.dim = dim, p.scale = 1.5f, p.skip_id = 3, p.dout = dout.data();
  p.ids = static_cast<const int32_t*>(ids.data()), p.dtable = dt.data(), p.dpositions = dp.data();
  p.position_ids = static_cast<const int32_t*>(pos_ids.data());
  be->run(p, 0);
  std::vector<double> ref_t(ht0.begin(), ht0.end()), ref_p(hp0.begin(), hp0.end());
  for (int64_t r = 0; r < rows; ++r) {
    if (hi[r] == 3) continue;
    for (int64_t c = 0; c < dim; ++c) ref_t[hi[r] * dim + c] += 1.5 * hdo[r * dim + c], ref_p[hpi[r] * dim + c] += hdo[r * dim + c];
  }
  report("embedding_backward float32 dtable", t, dt.download(), ref_t, all_indices(ref_t.size()), 1e-5);
  report("embedding_backward float32 dpositions", t, dp.download(), ref_p, all_indices(ref_p.size()), 1e-5);
}

// AdamW on the float32 master weights, writing their rounding to `half` too: the float32
// results are those without param_half, bit for bit, and the half copy is their rounding.
void check_adamw_half(tformer::Backend* be, DType half) {
  const int64_t n = 10007;
  lab::Buffer param(be, DType::f32, n), grad(be, DType::f32, n), m(be, DType::f32, n), v(be, DType::f32, n);
  lab::Buffer out(be, half, n), rounded(be, half, n);
  auto hp = lab::random_values(rng, n, DType::f32), hg = lab::random_values(rng, n, DType::f32);
  auto hm = lab::random_values(rng, n, DType::f32, 0.0f, 0.1f), hv = lab::random_values(rng, n, DType::f32, 0.0f, 0.1f);
  for (auto& x : hv) x = x * x;
  param.upload(hp), grad.upload(hg), m.upload(hm), v.upload(hv), out.upload(nans(n));
  tformer::AdamWParams p;
  p.n = n, p.lr = 1e-3, p.weight_decay = 0.01, p.step = 3, p.grad_scale = 0.25f;
  p.param = static_cast<float*>(param.data()), p.grad = static_cast<const float*>(grad.data());
  p.m = static_cast<float*>(m.data()), p.v = static_cast<float*>(v.data());
  p.param_half = out.data(), p.half_dtype = half;
  be->run(p, 0);
  const auto gp = param.download(), gm = m.download(), gv = v.download();
  const HostAdamW host(p);
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) {
    float pp = hp[i], mm = hm[i], vv = hv[i];
    host.update(pp, mm, vv, hg[i]);
    wrong += !(gp[i] == pp && gm[i] == mm && gv[i] == vv);
  }
  const std::string name = std::string("adamw param_half ") + tformer::dtype_name(half);
  expect(wrong == 0, name + " float32 bit-exact vs CPU order", std::to_string(wrong) + " element(s) differ");
  rounded.upload(gp);  // the host's round-to-nearest-even
  expect(out.download_bytes() == rounded.download_bytes(), name + " = rounded master weights");
}

#ifndef TFORMER_LAB_EMULATED
// C (float32) += A^T B with half A, B: the weight gradient of mixed-precision training.
void check_gemm_f32_out(tformer::Backend* be, DType t, int64_t m, int64_t n, int64_t k) {
  lab::Buffer a(be, t, k * m), b(be, t, k * n), c(be, DType::f32, m * n);
  const auto ha = lab::random_values(rng, a.size(), t), hb = lab::random_values(rng, b.size(), t);
  const auto hc = lab::random_values(rng, c.size(), DType::f32);
  a.upload(ha), b.upload(hb), c.upload(hc);
  tformer::GemmParams p;
  p.dtype = t, p.c_f32 = true, p.trans_a = true, p.m = m, p.n = n, p.k = k, p.alpha = 1.0f, p.beta = 1.0f;
  p.a = a.data(), p.lda = m, p.b = b.data(), p.ldb = n, p.c = c.data(), p.ldc = n;
  be->run(p, 0);
  std::vector<double> ref(hc.begin(), hc.end());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t l = 0; l < k; ++l) ref[i * n + j] += double(ha[l * m + i]) * hb[l * n + j];
  report("gemm c_f32 dW += dY^T X " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k), t,
         c.download(), ref, all_indices(ref.size()), 1e-5);
}
#endif

// ---------------------------------------------------------------- attention

struct BackwardCase {
  int64_t batch, heads, head_dim, q_len, kv_len;
  bool causal = false;
  int64_t offset = 0;
  bool lengths = false;  // kv_lengths: batch 0 all keys, batch 1 none, others random
  bool cross = false;    // q from its own buffer, k / v from a fused KV buffer (else one fused QKV)
  bool aligned = false;  // 16-byte aligned rows and column blocks (half types: the tensor-core kernels)
};

// Forward with lse_out, then the backward; dq / dk / dv are column blocks of one fused
// (batch, len, 3 * width + 2 gap) gradient buffer, as the training path lays them out.
// The column gaps (buffer widths, block offsets) are odd (gap 1), or 8 elements when
// c.aligned, which half types need for the tensor-core kernels (else the CUDA-core ones run).
// References in float64 from the definition (softmax, then the chain rule).
void check_attention_backward(tformer::Backend* be, DType t, const BackwardCase& c) {
  const int64_t hw = c.heads * c.head_dim, D = c.head_dim;
  const int64_t gap = c.aligned ? 8 : 1;
  const int64_t qw = c.cross ? hw + (c.aligned ? 8 : 3) : 3 * hw + gap, kvw = c.cross ? 2 * hw + gap : qw;
  const int64_t q_rows = c.cross ? c.q_len : std::max(c.q_len, c.kv_len), kv_rows = c.cross ? c.kv_len : q_rows;
  const int64_t gw = 3 * hw + 2 * gap;  // gradient buffer width
  lab::Buffer qbuf(be, t, c.batch * q_rows * qw), kvbuf(be, t, c.cross ? c.batch * kv_rows * kvw : 1);
  lab::Buffer out(be, t, c.batch * c.q_len * hw), dout(be, t, c.batch * c.q_len * hw);
  lab::Buffer lse(be, DType::f32, c.batch * c.heads * c.q_len), kvl(be, DType::i32, c.batch);
  lab::Buffer gq(be, t, c.batch * q_rows * gw), gkv(be, t, c.batch * kv_rows * gw);
  const auto hq = lab::random_values(rng, qbuf.size(), t), hkv = lab::random_values(rng, kvbuf.size(), t);
  const auto hdo = lab::random_values(rng, dout.size(), t);
  const std::vector<float>& hk = c.cross ? hkv : hq;
  std::vector<int32_t> hl(c.batch);
  for (int64_t b = 0; b < c.batch; ++b)
    hl[b] = !c.lengths ? int32_t(c.kv_len) : b == 0 ? int32_t(c.kv_len) : b == 1 ? 0 : int32_t(rng() % (c.kv_len + 1));
  qbuf.upload(hq), out.upload(nans(out.size())), dout.upload(hdo), lse.upload(nans(lse.size())), kvl.upload_i32(hl);
  gq.upload(nans(gq.size())), gkv.upload(nans(gkv.size()));
  if (c.cross) kvbuf.upload(hkv);

  const size_t es = tformer::dtype_size(t);
  const int64_t k0 = c.cross ? 0 : hw, v0 = c.cross ? hw : 2 * hw;
  const int64_t q_bs = q_rows * qw, kv_bs = kv_rows * kvw;
  char* kv_base = static_cast<char*>(c.cross ? kvbuf.data() : qbuf.data());
  tformer::AttentionParams f;
  f.dtype = t, f.batch = c.batch, f.heads = c.heads, f.head_dim = D, f.q_len = c.q_len, f.kv_len = c.kv_len;
  f.q = qbuf.data(), f.q_batch_stride = q_bs, f.q_row_stride = qw;
  f.k = kv_base + k0 * es, f.v = kv_base + v0 * es;
  f.k_batch_stride = f.v_batch_stride = kv_bs, f.k_row_stride = f.v_row_stride = kvw;
  f.out = out.data(), f.out_batch_stride = c.q_len * hw, f.out_row_stride = hw;
  f.kv_lengths = c.lengths ? static_cast<const int32_t*>(kvl.data()) : nullptr;
  f.causal = c.causal, f.causal_offset = c.offset, f.scale = float(1 / std::sqrt(double(D)));
  f.lse_out = static_cast<float*>(lse.data());
  be->run(f, 0);

  tformer::AttentionBackwardParams p;
  p.fwd = f, p.fwd.lse_out = nullptr;
  p.dout = dout.data(), p.dout_batch_stride = c.q_len * hw, p.dout_row_stride = hw;
  p.lse = static_cast<const float*>(lse.data());
  // dq at column gap of gq; dk at column hw + gap and dv at column 2 (hw + gap) of gkv.
  p.dq = static_cast<char*>(gq.data()) + gap * es, p.dq_batch_stride = q_rows * gw, p.dq_row_stride = gw;
  p.dk = static_cast<char*>(gkv.data()) + (hw + gap) * es;
  p.dv = static_cast<char*>(gkv.data()) + (2 * hw + 2 * gap) * es;
  p.dk_batch_stride = p.dv_batch_stride = kv_rows * gw, p.dk_row_stride = p.dv_row_stride = gw;
#ifdef TFORMER_LAB_EMULATED
  const bool tensor_cores = t != DType::f32 && c.aligned && D % 8 == 0;
  expect(tformer::cuda::attention_backward_mma_supported(p) == tensor_cores,
         std::string("attention_backward takes the ") + (tensor_cores ? "tensor-core" : "CUDA-core") + " path " +
             tformer::dtype_name(t));
#endif
  be->run(p, 0);

  std::vector<double> ref_lse, ref_dq, ref_dk(c.batch * c.kv_len * hw, 0.0), ref_dv(c.batch * c.kv_len * hw, 0.0);
  std::vector<size_t> w_lse, w_dq, w_dk, w_dv;
  int64_t lse_inf_wrong = 0;
  const auto got_lse = lse.download();
  const lab::MaskedAttention mask{D, c.kv_len, 1, hl.data(), c.causal, c.offset, f.scale};
  const lab::HostRows q_host{hq.data(), q_bs, qw}, k_host{hk.data() + k0, kv_bs, kvw};
  const lab::HostRows v_host{hk.data() + v0, kv_bs, kvw};
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.q_len; ++i) {
        const float* q = q_host.at(b, i, h, D);
        const float* dy = &hdo[(b * c.q_len + i) * hw + h * D];
        const lab::AttentionRow row = lab::attention_row(mask, q_host, k_host, b, h, i);
        const size_t lse_at = (b * c.heads + h) * c.q_len + i;
        std::vector<double> dq(D, 0.0);
        if (row.keys.empty()) {
          lse_inf_wrong += !(got_lse[lse_at] == -INFINITY);
        } else {
          ref_lse.push_back(row.lse), w_lse.push_back(lse_at);
          const std::vector<double> o = lab::attention_output(row, v_host, h, D);
          // dS = P (dP - delta) with dP = dy . v and delta = dy . o; then the chain rule.
          double delta = 0;
          for (int64_t d = 0; d < D; ++d) delta += dy[d] * o[d];
          for (size_t n = 0; n < row.keys.size(); ++n) {
            const float* k = k_host.at(b, row.keys[n], h, D);
            const float* v = v_host.at(b, row.keys[n], h, D);
            const double prob = row.prob[n];
            double dpv = 0;
            for (int64_t d = 0; d < D; ++d) dpv += dy[d] * double(v[d]);
            const double ds = prob * (dpv - delta) * f.scale;
            const size_t at = (b * c.kv_len + row.keys[n]) * hw + h * D;
            for (int64_t d = 0; d < D; ++d) {
              dq[d] += ds * k[d];
              ref_dk[at + d] += ds * q[d];
              ref_dv[at + d] += prob * dy[d];
            }
          }
        }
        for (int64_t d = 0; d < D; ++d) ref_dq.push_back(dq[d]), w_dq.push_back((b * q_rows + i) * gw + gap + h * D + d);
      }
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t j = 0; j < c.kv_len; ++j)
      for (int64_t x = 0; x < hw; ++x) {
        w_dk.push_back((b * kv_rows + j) * gw + hw + gap + x);
        w_dv.push_back((b * kv_rows + j) * gw + 2 * (hw + gap) + x);
      }
  char name[128];
  std::snprintf(name, sizeof name, "attention_backward B%ld H%ld D%ld q%ld kv%ld%s%s%s%s", long(c.batch),
                long(c.heads), long(D), long(c.q_len), long(c.kv_len),
                c.causal ? (" causal" + std::to_string(c.offset)).c_str() : "", c.lengths ? " kv_lengths" : "",
                c.cross ? " cross" : "", c.aligned ? " aligned" : "");
  report(std::string(name) + " fwd lse", t, got_lse, ref_lse, w_lse, 1e-5);
  expect(lse_inf_wrong == 0, std::string(name) + " fwd lse -inf where no key", std::to_string(lse_inf_wrong) + " wrong");
  const auto got_q = gq.download(), got_kv = gkv.download();
  // With one visible key dS = P (dP - delta) is 0 up to rounding: dq and dk are then
  // measured against the scale of dv, the gradients' natural size.
  double dv_norm = 0;
  for (double x : ref_dv) dv_norm += x * x;
  const double floor = c.kv_len == 1 ? std::sqrt(dv_norm) : 0.0;
  report(std::string(name) + " dq", t, got_q, ref_dq, w_dq, sum_tolerance(t), floor);
  report(std::string(name) + " dk", t, got_kv, ref_dk, w_dk, sum_tolerance(t), floor);
  report(std::string(name) + " dv", t, got_kv, ref_dv, w_dv, sum_tolerance(t));
  // Columns outside the three blocks keep their NaN: nothing is written past a block.
  int64_t touched = 0;
  for (int64_t r = 0; r < c.batch * q_rows; ++r)
    touched += !std::isnan(got_q[r * gw + gap - 1]) + !std::isnan(got_q[r * gw + hw + gap]);
  for (int64_t r = 0; r < c.batch * kv_rows; ++r)
    touched += !std::isnan(got_kv[r * gw + hw + gap - 1]) + !std::isnan(got_kv[r * gw + 2 * hw + 2 * gap - 1]);
  expect(touched == 0, std::string(name) + " nothing written outside dq/dk/dv", std::to_string(touched) + " written");
}

// Every layout and mask the attention backward serves. Aligned cases: half types run the
// tensor-core kernels (train_attention_mma.cu), the others the CUDA-core ones (skipped
// when aligned_only).
void check_attention_backward_cases(tformer::Backend* be, DType t, bool aligned_only = false) {
  for (int64_t hd : {32, 64, 80, 96, 128})
    check_attention_backward(be, t, {2, 3, hd, 37, 45, false, 0, false, false, true});
  if (!aligned_only) check_attention_backward(be, t, {2, 3, 64, 37, 45});             // odd widths: CUDA-core kernels
  check_attention_backward(be, t, {2, 2, 64, 50, 50, true, 0, false, false, true});    // causal self-attention
  check_attention_backward(be, t, {3, 2, 64, 70, 70, true, 0, true, false, true});     // + padding, a batch of no keys
  check_attention_backward(be, t, {2, 1, 40, 18, 40, true, -3, true, false, true});    // rows that see no key
  check_attention_backward(be, t, {2, 2, 64, 20, 70, true, 50, true, false, true});    // chunked prefill
  if (!aligned_only) check_attention_backward(be, t, {2, 2, 64, 20, 70, true, 50, true});  // the same, odd widths
  check_attention_backward(be, t, {3, 4, 64, 33, 97, false, 0, true, true, true});     // cross-attention + padding
  check_attention_backward(be, t, {1, 2, 128, 130, 1, false, 0, false, true, true});   // one key
  check_attention_backward(be, t, {1, 1, 16, 1, 65, false, 0, false, true, true});     // one query
  check_attention_backward(be, t, {1, 2, 128, 150, 150, true, 0, true, false, true});  // several tiles per side
  check_attention_backward(be, t, {2, 1, 96, 100, 77, false, 0, true, true, true});    // cross, partial tiles
  check_attention_backward(be, t, {1, 2, 32, 140, 200, true, 60, false, true, true});  // causal cross, offset 60
}

void check_errors(tformer::Backend* be) {
  tformer::AttentionBackwardParams p;
  p.fwd.batch = p.fwd.heads = p.fwd.q_len = p.fwd.kv_len = 1, p.fwd.head_dim = 160;
  expect_throw("attention_backward head_dim 160", [&] { be->run(p, 0); }, "head_dim 160");
  p.fwd.head_dim = 64, p.fwd.kv_group = 2;
  expect_throw("attention_backward kv_group 2", [&] { be->run(p, 0); }, "kv_group");
#ifdef TFORMER_LAB_EMULATED
  {  // Which calls the tensor-core kernels take: each requirement broken once (no kernel runs).
    alignas(16) static char mem[64];
    tformer::AttentionBackwardParams a;
    a.fwd.dtype = DType::bf16, a.fwd.batch = a.fwd.heads = a.fwd.q_len = a.fwd.kv_len = 1, a.fwd.head_dim = 64;
    a.fwd.q = a.fwd.k = a.fwd.v = a.dout = mem, a.dq = a.dk = a.dv = mem;
    a.fwd.q_row_stride = a.fwd.k_row_stride = a.fwd.v_row_stride = a.dout_row_stride = 192;
    a.dq_row_stride = a.dk_row_stride = a.dv_row_stride = 192;
    const auto takes = [&](const char* what, bool want, auto&& change) {
      tformer::AttentionBackwardParams b = a;
      change(b);
      expect(tformer::cuda::attention_backward_mma_supported(b) == want,
             std::string("attention_backward tensor-core path ") + (want ? "taken: " : "not taken: ") + what);
    };
    takes("aligned bf16", true, [](auto&) {});
    takes("aligned f16, head_dim 120", true, [](auto& b) { b.fwd.dtype = DType::f16, b.fwd.head_dim = 120; });
    takes("f32", false, [](auto& b) { b.fwd.dtype = DType::f32; });
    takes("head_dim 36", false, [](auto& b) { b.fwd.head_dim = 36; });
    takes("head_dim 136", false, [](auto& b) { b.fwd.head_dim = 136; });
    takes("dv 2 bytes off", false, [](auto& b) { b.dv = mem + 2; });
    takes("k 8 bytes off", false, [](auto& b) { b.fwd.k = mem + 8; });
    takes("dout row stride 100", false, [](auto& b) { b.dout_row_stride = 100; });
    takes("q batch stride 12", false, [](auto& b) { b.fwd.q_batch_stride = 12; });
  }
#endif
  tformer::CrossEntropyParams ce;
  ce.dtype = DType::i32, ce.rows = ce.vocab = 1;
  expect_throw("cross_entropy int32", [&] { be->run(ce, 0); }, "int32");
  tformer::DropoutParams dp;
  dp.n = 1, dp.p = 1.5f;
  expect_throw("dropout p 1.5", [&] { be->run(dp, 0); }, "p must be in [0, 1]");
  expect(be->saves_training_stats(), "saves_training_stats() is true");
}

}  // namespace

int main(int argc, char** argv) {
  try {
#ifdef TFORMER_LAB_EMULATED
    // The kernels on the CPU emulator: f32 only unless --all-dtypes (it is slow), but
    // the half-precision attention backward cases always (tensor-core kernels).
    tformer::Backend* be = make_emulated_backend();
    const bool all_dtypes = argc > 1 && std::string(argv[1]) == "--all-dtypes";
#else
    tformer::Backend* be = lab::load_backend(argc > 1 ? argv[1] : "libtformer_cuda.so");
    const bool all_dtypes = true;
#endif
    std::printf("%s\n", be->name().c_str());
    for (DType t : kFloatTypes) {
      if (t != DType::f32 && !all_dtypes) break;
      for (int64_t cols : {1, 64, 1000, 4096}) check_layer_norm_backward(be, t, 37, cols, false, false, true);
      check_layer_norm_backward(be, t, 3001, 96, false, false, true);  // 64 row chunks of dgamma partials
      check_layer_norm_backward(be, t, 37, 300, true, false, true);
      check_layer_norm_backward(be, t, 37, 300, false, true, true);
      check_layer_norm_backward(be, t, 37, 300, true, true, false);
      for (int act = 0; act <= 4; ++act) check_bias_act_backward(be, t, Activation(act), act % 2 == 1);
      for (int64_t rows : {1, 37, 5000}) check_sum_rows(be, t, rows, 300);
      check_sum_rows(be, t, 100, 1);
      check_sum_rows(be, t, 3, 33);
      for (int64_t n : {1, 1000, 3 << 16, (1 << 20) + 7}) check_sum_squares(be, t, n);
      for (int64_t vocab : {1, 1000, 32003}) check_cross_entropy(be, t, 37, vocab, 0.1f, true, false);
      check_cross_entropy(be, t, 37, 1000, 0.0f, true, false);
      check_cross_entropy(be, t, 37, 1000, 0.1f, true, true);
      check_cross_entropy(be, t, 37, 1000, 0.1f, false, false);
      check_embedding_backward(be, t, true, true), check_embedding_backward(be, t, false, true);
      check_embedding_backward(be, t, true, false);
      check_dropout(be, t, 100003, 0.1f, 1234, 0, false);
      check_dropout(be, t, 100003, 0.5f, 7, uint64_t(1) << 33, true);
      check_dropout(be, t, 1001, 1.0f, 3, 5, false);
      check_dropout(be, t, 1001, 0.0f, 3, 5, false);
      check_attention_backward_cases(be, t);
    }
    for (double wd : {0.0, 0.01})
      for (int64_t step : {1, 1000}) check_adamw(be, 1e-3, 0.9, wd, step, 1.0f);
    check_adamw(be, 3e-4, 0.4, 0.1, 7, 0.5f);  // beta1 0.4: lerp's large-weight form
    // The tensor-core attention backward exists for half types only: checked in every run.
    if (!all_dtypes)
      for (DType t : {DType::f16, DType::bf16}) check_attention_backward_cases(be, t, true);
    for (DType half : {DType::f16, DType::bf16}) {  // mixed precision (small: also under the emulator)
      check_sum_rows_f32_grad(be, half, 300, 70);
      check_layer_norm_f32_grads(be, half, 80, 96);
      check_embedding_backward_f32(be, half);
      check_adamw_half(be, half);
#ifndef TFORMER_LAB_EMULATED
      check_gemm_f32_out(be, half, 64, 48, 1000);
#endif
    }
    check_errors(be);
    return lab::finish(be);
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 2;
  }
}
