// Correctness lab for libtformer_cuda.so, independent of the Python bindings: every op
// of backend.h, for f32/f16/bf16, on fresh random data with NaN-poisoned outputs,
// against float64 references on the host; plus the error paths (bad dtype, bad
// device, out of memory) and allocator reuse. Prints one line per case and exits 1 on
// any failure.
//   g++ -O2 -std=c++17 -Icpp/include bench/gpu/check_backend.cpp -ldl -o /tmp/check_backend
//   /tmp/check_backend build/libtformer_cuda.so
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

#include "lab_util.h"

using tformer::Activation;
using tformer::DType;

namespace {

int failures = 0;
std::mt19937 rng(1234);
const DType kFloatTypes[] = {DType::f32, DType::f16, DType::bf16};

// Relative error tolerances by storage dtype: fp32 math is exact to rounding; f16 and
// bf16 lose their output rounding (and, in gemm, cuBLAS's internal conversions).
double tolerance(DType t) { return t == DType::f32 ? 1e-5 : t == DType::f16 ? 2e-3 : 1.6e-2; }

// ||got - ref|| / ||ref|| over the listed indices; NaN (an unwritten output) fails.
void report(const std::string& name, DType t, const std::vector<float>& got,
            const std::vector<double>& ref, const std::vector<size_t>& where) {
  double num = 0, den = 0;
  bool nan = false;
  for (size_t k = 0; k < where.size(); ++k) {
    const double g = got[where[k]];
    nan |= std::isnan(g);
    num += (g - ref[k]) * (g - ref[k]);
    den += ref[k] * ref[k];
  }
  const double err = std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
  const bool ok = !nan && err <= tolerance(t);
  failures += !ok;
  std::printf("%-4s %-58s %-9s rel err %.2e%s\n", ok ? "ok" : "FAIL", name.c_str(),
              tformer::dtype_name(t), err, nan ? " (NaN: unwritten output)" : "");
}

std::vector<size_t> all_indices(size_t n) {
  std::vector<size_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

std::vector<float> nans(size_t n) { return std::vector<float>(n, NAN); }

void expect_throw(const std::string& name, const std::function<void()>& fn, const char* want) {
  try {
    fn();
    std::printf("FAIL %s: no exception\n", name.c_str());
    ++failures;
  } catch (const std::exception& e) {
    const bool ok = std::string(e.what()).find(want) != std::string::npos;
    failures += !ok;
    std::printf("%-4s %s: %s\n", ok ? "ok" : "FAIL", name.c_str(), e.what());
  }
}

// ---------------------------------------------------------------- ops

void check_gemm(tformer::Backend* be, DType t, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                float beta) {
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  const int64_t lda = a_cols + 3, ldb = b_cols + 1, ldc = n + 2;  // padded rows
  lab::Buffer a(be, t, a_rows * lda), b(be, t, b_rows * ldb), c(be, t, m * ldc);
  auto ha = lab::random_values(rng, a.size(), t), hb = lab::random_values(rng, b.size(), t);
  auto hc = beta == 0.0f ? nans(c.size()) : lab::random_values(rng, c.size(), t);
  a.upload(ha), b.upload(hb), c.upload(hc);
  tformer::GemmParams p;
  p.dtype = t, p.trans_a = ta, p.trans_b = tb, p.m = m, p.n = n, p.k = k, p.alpha = 0.75f, p.beta = beta;
  p.a = a.data(), p.lda = lda, p.b = b.data(), p.ldb = ldb, p.c = c.data(), p.ldc = ldc;
  be->gemm(p, 0);
  std::vector<double> ref;
  std::vector<size_t> where;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l)
        s += double(ta ? ha[l * lda + i] : ha[i * lda + l]) * (tb ? hb[j * ldb + l] : hb[l * ldb + j]);
      ref.push_back(0.75 * s + (beta == 0.0f ? 0.0 : beta * double(hc[i * ldc + j])));
      where.push_back(i * ldc + j);
    }
  char name[96];
  std::snprintf(name, sizeof name, "gemm %c%c m%ld n%ld k%ld beta %.1f", ta ? 'T' : 'N', tb ? 'T' : 'N',
                long(m), long(n), long(k), beta);
  report(name, t, c.download(), ref, where);
}

double activate(Activation act, double x) {
  switch (act) {
    case Activation::relu: return std::max(x, 0.0);
    case Activation::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Activation::gelu_tanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case Activation::silu: return x / (1 + std::exp(-x));
    default: return x;
  }
}

void check_bias_act(tformer::Backend* be, DType t, Activation act, bool in_place) {
  const int64_t rows = 37, cols = 300;
  lab::Buffer x(be, t, rows * cols), bias(be, t, cols), res(be, t, rows * cols), out(be, t, rows * cols);
  auto hx = lab::random_values(rng, x.size(), t), hb = lab::random_values(rng, cols, t);
  auto hr = lab::random_values(rng, res.size(), t);
  x.upload(hx), bias.upload(hb), res.upload(hr), out.upload(nans(out.size()));
  tformer::BiasActParams p;
  p.dtype = t, p.rows = rows, p.cols = cols, p.act = act;
  p.out = in_place ? x.data() : out.data(), p.x = x.data(), p.bias = bias.data(), p.residual = res.data();
  be->bias_act(p, 0);
  std::vector<double> ref(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) ref[i] = activate(act, double(hx[i]) + hb[i % cols]) + hr[i];
  report("bias_act act=" + std::to_string(int(act)) + (in_place ? " in place" : ""), t,
         (in_place ? x : out).download(), ref, all_indices(ref.size()));
}

void check_layer_norm(tformer::Backend* be, DType t, int64_t cols, bool fused, bool in_place) {
  const int64_t rows = 19;
  lab::Buffer x(be, t, rows * cols), bias(be, t, cols), res(be, t, rows * cols), g(be, t, cols),
      bt(be, t, cols), out(be, t, rows * cols), sum(be, t, rows * cols);
  auto hx = lab::random_values(rng, x.size(), t, 30.0f, 2.0f);  // |mean| >> std
  auto hb = lab::random_values(rng, cols, t), hr = lab::random_values(rng, res.size(), t);
  auto hg = lab::random_values(rng, cols, t, 1.0f, 0.2f), hbt = lab::random_values(rng, cols, t);
  x.upload(hx), bias.upload(hb), res.upload(hr), g.upload(hg), bt.upload(hbt);
  out.upload(nans(out.size())), sum.upload(nans(sum.size()));
  tformer::LayerNormParams p;
  p.dtype = t, p.rows = rows, p.cols = cols, p.eps = 1e-5f;
  p.out = in_place ? x.data() : out.data(), p.x = x.data(), p.gamma = g.data(), p.beta = bt.data();
  if (fused) p.bias = bias.data(), p.residual = res.data(), p.sum_out = sum.data();
  be->layer_norm(p, 0);
  std::vector<double> ref(rows * cols), ref_sum(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      ref_sum[i] = double(hx[i]) + (fused ? double(hb[c]) + hr[i] : 0.0);
      mean += ref_sum[i] / cols;
    }
    for (int64_t c = 0; c < cols; ++c) var += (ref_sum[r * cols + c] - mean) * (ref_sum[r * cols + c] - mean) / cols;
    for (int64_t c = 0; c < cols; ++c)
      ref[r * cols + c] = (ref_sum[r * cols + c] - mean) / std::sqrt(var + 1e-5) * hg[c] + hbt[c];
  }
  const std::string name = "layer_norm cols " + std::to_string(cols) + (fused ? " +bias+residual" : "") +
                           (in_place ? " in place" : "");
  report(name, t, (in_place ? x : out).download(), ref, all_indices(ref.size()));
  if (fused) report(name + " sum_out", t, sum.download(), ref_sum, all_indices(ref.size()));
}

void check_embedding(tformer::Backend* be, DType t, bool with_positions) {
  const int64_t rows = 23, dim = 96, vocab = 50, max_pos = 40;
  lab::Buffer table(be, t, vocab * dim), pos(be, t, max_pos * dim), out(be, t, rows * dim);
  lab::Buffer ids(be, DType::i32, rows), pos_ids(be, DType::i32, rows);
  auto ht = lab::random_values(rng, table.size(), t), hp = lab::random_values(rng, pos.size(), t);
  std::vector<int32_t> hi(rows), hpi(rows);
  for (int64_t r = 0; r < rows; ++r) hi[r] = int32_t(rng() % vocab), hpi[r] = int32_t(rng() % max_pos);
  table.upload(ht), pos.upload(hp), ids.upload_i32(hi), pos_ids.upload_i32(hpi), out.upload(nans(out.size()));
  tformer::EmbeddingParams p;
  p.dtype = t, p.rows = rows, p.dim = dim, p.scale = 3.0f, p.out = out.data();
  p.ids = static_cast<const int32_t*>(ids.data()), p.table = table.data();
  if (with_positions) p.position_ids = static_cast<const int32_t*>(pos_ids.data()), p.positions = pos.data();
  be->embedding(p, 0);
  std::vector<double> ref(rows * dim);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < dim; ++c)
      ref[r * dim + c] = 3.0 * ht[hi[r] * dim + c] + (with_positions ? hp[hpi[r] * dim + c] : 0.0f);
  report(std::string("embedding") + (with_positions ? " +positions" : ""), t, out.download(), ref,
         all_indices(ref.size()));
}

void check_cast(tformer::Backend* be, DType from, DType to) {
  const int64_t n = 1000;
  lab::Buffer src(be, from, n), dst(be, to, n);
  auto hs = lab::random_values(rng, n, from, 0.0f, 100.0f);
  src.upload(hs), dst.upload(nans(n));
  tformer::CastParams p;
  p.src_dtype = from, p.dst_dtype = to, p.n = n, p.src = src.data(), p.dst = dst.data();
  be->cast(p, 0);
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) ref[i] = lab::round_to(to, hs[i]);
  report(std::string("cast from ") + tformer::dtype_name(from), to, dst.download(), ref, all_indices(n));
}

// q, k, v are column slices of one fused (batch, len, 3 * heads * head_dim) buffer.
void check_attention(tformer::Backend* be, DType t, int64_t batch, int64_t heads, int64_t hd,
                     int64_t lq, int64_t lk, bool causal, int64_t offset, bool lengths) {
  const int64_t width = 3 * heads * hd, len = std::max(lq, lk), ow = heads * hd + 5;
  lab::Buffer qkv(be, t, batch * len * width), out(be, t, batch * lq * ow), kvl(be, DType::i32, batch);
  auto h = lab::random_values(rng, qkv.size(), t);
  std::vector<int32_t> hl(batch);
  for (int64_t b = 0; b < batch; ++b) hl[b] = lengths ? int32_t(b == 0 ? lk : rng() % (lk + 1)) : int32_t(lk);
  qkv.upload(h), out.upload(nans(out.size())), kvl.upload_i32(hl);
  tformer::AttentionParams p;
  p.dtype = t, p.batch = batch, p.heads = heads, p.head_dim = hd, p.q_len = lq, p.kv_len = lk;
  const auto base = static_cast<char*>(qkv.data());
  const size_t es = tformer::dtype_size(t);
  p.q = base, p.k = base + heads * hd * es, p.v = base + 2 * heads * hd * es;
  p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = len * width;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = width;
  p.out = out.data(), p.out_batch_stride = lq * ow, p.out_row_stride = ow;
  p.kv_lengths = lengths ? static_cast<const int32_t*>(kvl.data()) : nullptr;
  p.causal = causal, p.causal_offset = offset, p.scale = float(1 / std::sqrt(double(hd)));
  be->attention(p, 0);
  std::vector<double> ref;
  std::vector<size_t> where;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < lq; ++i)
      for (int64_t hh = 0; hh < heads; ++hh) {
        const float* q = &h[(b * len + i) * width + hh * hd];
        std::vector<double> s;
        std::vector<int64_t> keys;
        for (int64_t j = 0; j < lk; ++j) {
          if (j >= hl[b] || (causal && j > i + offset)) continue;
          const float* k = &h[(b * len + j) * width + heads * hd + hh * hd];
          double dot = 0;
          for (int64_t d = 0; d < hd; ++d) dot += double(q[d]) * k[d];
          s.push_back(dot * p.scale), keys.push_back(j);
        }
        const double mx = s.empty() ? 0 : *std::max_element(s.begin(), s.end());
        double total = 0;
        for (auto& x : s) total += (x = std::exp(x - mx));
        for (int64_t d = 0; d < hd; ++d) {
          double o = 0;
          for (size_t n = 0; n < keys.size(); ++n)
            o += s[n] / total * h[(b * len + keys[n]) * width + 2 * heads * hd + hh * hd + d];
          ref.push_back(o), where.push_back((b * lq + i) * ow + hh * hd + d);
        }
      }
  char name[96];
  std::snprintf(name, sizeof name, "attention B%ld H%ld D%ld q%ld kv%ld%s%s", long(batch), long(heads),
                long(hd), long(lq), long(lk), causal ? (" causal" + std::to_string(offset)).c_str() : "",
                lengths ? " kv_lengths" : "");
  report(name, t, out.download(), ref, where);
}

void check_errors(tformer::Backend* be) {
  expect_throw("bad device", [&] { be->allocate(16, be->device_count()); }, "does not exist");
  expect_throw("out of memory", [&] { be->allocate(size_t(1) << 50, 0); }, "CUDA out of memory");
  tformer::LayerNormParams ln;
  ln.dtype = DType::i32, ln.rows = 1, ln.cols = 1;
  expect_throw("layer_norm int32", [&] { be->layer_norm(ln, 0); }, "int32");
  tformer::AttentionParams at;
  at.batch = at.heads = at.q_len = at.kv_len = 1, at.head_dim = 300;
  expect_throw("attention head_dim 300", [&] { be->attention(at, 0); }, "head_dim 300");
  void* first = be->allocate(1000, 0);
  be->deallocate(first, 1000, 0);
  void* again = be->allocate(1000, 0);
  std::printf("%-4s allocator reuses a freed block\n", again == first ? "ok" : "FAIL");
  failures += again != first;
  be->deallocate(again, 1000, 0);
  be->empty_cache();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    tformer::Backend* be = lab::load_backend(argc > 1 ? argv[1] : "libtformer_cuda.so");
    std::printf("%s\n", be->name().c_str());
    for (DType t : kFloatTypes) {
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) check_gemm(be, t, ta, tb, 67, 45, 130, ta ? 0.5f : 0.0f);
      check_gemm(be, t, false, false, 1, 300, 64, 0.0f);
      check_gemm(be, t, false, true, 5, 7, 0, 0.5f);
      for (int act = 0; act <= 4; ++act) check_bias_act(be, t, Activation(act), act == 2);
      for (int64_t cols : {64, 1000, 4096}) check_layer_norm(be, t, cols, cols != 64, cols == 1000);
      check_embedding(be, t, false), check_embedding(be, t, true);
      for (DType to : kFloatTypes) check_cast(be, t, to);
      for (int64_t hd : {32, 64, 80, 96, 128, 160, 256}) check_attention(be, t, 2, 3, hd, 37, 45, false, 0, false);
      check_attention(be, t, 2, 2, 64, 50, 50, true, 0, false);
      check_attention(be, t, 3, 2, 128, 1, 77, true, 76, true);   // decode step
      check_attention(be, t, 2, 2, 64, 20, 70, true, 50, true);   // chunked prefill
      check_attention(be, t, 2, 1, 40, 18, 40, true, -3, true);   // rows that see no key
      check_attention(be, t, 1, 2, 256, 130, 300, false, 0, true);
    }
    check_errors(be);
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    delete be;
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 2;
  }
}
