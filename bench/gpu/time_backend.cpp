// Timing lab for libtformer_cuda.so: median wall time of the backend's ops on random
// data (warm-up first; host clock around back-to-back calls and a synchronize()),
// with the achieved rate; then the training kernels (skipped with --forward-only).
// Compare numbers only between runs on the same card.
//   g++ -O2 -std=c++17 -Icpp/include bench/gpu/time_backend.cpp -ldl -o /tmp/time_backend
//   /tmp/time_backend build/libtformer_cuda.so
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <cstdio>
#include <functional>

#include "lab_util.h"

using tformer::DType;

namespace {

std::mt19937 rng(99);

// Seconds per call: the median over `reps` samples of `inner` back-to-back calls and
// one synchronize (so launch gaps overlap and the sync is amortised), after warm-up.
double median_seconds(tformer::Backend* be, const std::function<void()>& fn, int reps = 15,
                      int inner = 10) {
  for (int i = 0; i < 3; ++i) fn();
  be->synchronize(0);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    for (int j = 0; j < inner; ++j) fn();
    be->synchronize(0);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / inner);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void time_attention(tformer::Backend* be, DType t, int64_t batch, int64_t heads, int64_t hd,
                    int64_t lq, int64_t lk, bool causal) {
  const int64_t width = heads * hd;
  lab::Buffer q(be, t, batch * lq * width), k(be, t, batch * lk * width), v(be, t, batch * lk * width),
      out(be, t, batch * lq * width);
  q.upload(lab::random_values(rng, q.size(), t)), k.upload(lab::random_values(rng, k.size(), t));
  v.upload(lab::random_values(rng, v.size(), t));
  tformer::AttentionParams p;
  p.dtype = t, p.batch = batch, p.heads = heads, p.head_dim = hd, p.q_len = lq, p.kv_len = lk;
  p.q = q.data(), p.q_batch_stride = lq * width, p.q_row_stride = width;
  p.k = k.data(), p.k_batch_stride = lk * width, p.k_row_stride = width;
  p.v = v.data(), p.v_batch_stride = lk * width, p.v_row_stride = width;
  p.out = out.data(), p.out_batch_stride = lq * width, p.out_row_stride = width;
  p.causal = causal, p.causal_offset = lk - lq, p.scale = 0.125f;
  const double s = median_seconds(be, [&] { be->run(p, 0); });
  const double flops = 4.0 * batch * heads * lq * lk * hd * (causal && lq > 1 ? 0.5 : 1.0);
  const double bytes = double(q.size() + k.size() + v.size() + out.size()) * tformer::dtype_size(t);
  std::printf("attention B%-3ld H%-3ld D%-4ld q%-5ld kv%-5ld %-7s %-9s %9.3f ms %8.2f TFLOP/s %8.1f GB/s\n",
              long(batch), long(heads), long(hd), long(lq), long(lk), causal ? "causal" : "",
              tformer::dtype_name(t), s * 1e3, flops / s * 1e-12, bytes / s * 1e-9);
}

// A beam-search decode step of cross-attention: 8 sentences x 5 beams sharing their
// sentence's encoder K/V (kv_group 5), with and without the head-averaged weights.
void time_cross_attention(tformer::Backend* be, DType t, bool weights) {
  const int64_t batch = 40, group = 5, heads = 8, hd = 64, lk = 100, width = heads * hd;
  lab::Buffer q(be, t, batch * width), kv(be, t, batch / group * lk * 2 * width), out(be, t, batch * width);
  lab::Buffer w(be, DType::f32, batch * lk);
  q.upload(lab::random_values(rng, q.size(), t)), kv.upload(lab::random_values(rng, kv.size(), t));
  tformer::AttentionParams p;
  p.dtype = t, p.batch = batch, p.heads = heads, p.head_dim = hd, p.q_len = 1, p.kv_len = lk, p.kv_group = group;
  p.q = q.data(), p.q_batch_stride = p.q_row_stride = width;
  p.k = kv.data(), p.v = static_cast<char*>(kv.data()) + width * tformer::dtype_size(t);
  p.k_batch_stride = p.v_batch_stride = lk * 2 * width, p.k_row_stride = p.v_row_stride = 2 * width;
  p.out = out.data(), p.out_batch_stride = p.out_row_stride = width, p.scale = 0.125f;
  if (weights) p.weights_out = static_cast<float*>(w.data());
  const double s = median_seconds(be, [&] { be->run(p, 0); });
  std::printf("attention B%-3ld H%-3ld D%-4ld q1     kv%-5ld kv_group %ld%s %-9s %9.3f ms\n", long(batch),
              long(heads), long(hd), long(lk), long(group), weights ? " +weights" : "         ",
              tformer::dtype_name(t), s * 1e3);
}

// Decode step (q_len 1, attention_decode.cu) against KV caches (kv batch, max_len,
// heads * hd) holding kv keys, kv_group beams per cache: GB/s of K and V read, once per
// cache. Few (batch, head) rows split the keys; many run one pass.
void time_decode_attention(tformer::Backend* be, DType t, int64_t batch, int64_t heads, int64_t hd, int64_t kv,
                           int64_t group = 1) {
  const int64_t width = heads * hd, max_len = kv + 64, kv_batch = batch / group;
  lab::Buffer q(be, t, batch * width), k(be, t, kv_batch * max_len * width), v(be, t, kv_batch * max_len * width),
      out(be, t, batch * width);
  q.upload(lab::random_values(rng, q.size(), t)), k.upload(lab::random_values(rng, k.size(), t));
  v.upload(lab::random_values(rng, v.size(), t));
  tformer::AttentionParams p;
  p.dtype = t, p.batch = batch, p.heads = heads, p.head_dim = hd, p.q_len = 1, p.kv_len = kv, p.kv_group = group;
  p.q = q.data(), p.q_batch_stride = p.q_row_stride = width;
  p.k = k.data(), p.v = v.data(), p.k_batch_stride = p.v_batch_stride = max_len * width;
  p.k_row_stride = p.v_row_stride = width;
  p.out = out.data(), p.out_batch_stride = p.out_row_stride = width;
  p.causal = true, p.causal_offset = kv - 1, p.scale = float(1 / std::sqrt(double(hd)));
  const double s = median_seconds(be, [&] { be->run(p, 0); }, 15, 20);
  const double bytes = 2.0 * kv_batch * kv * width * tformer::dtype_size(t);
  std::printf("decode attention B%-4ld H%-3ld D%-4ld kv%-6ld kv_group %ld %-9s %9.4f ms %8.1f GB/s\n", long(batch),
              long(heads), long(hd), long(kv), long(group), tformer::dtype_name(t), s * 1e3, bytes / s * 1e-9);
}

// Beam reordering of a KV cache: 40 rows of 1 MiB, parents drawn at random.
void time_gather_rows(tformer::Backend* be) {
  const int64_t rows = 40, bytes = 1 << 20;
  lab::Buffer data(be, DType::i8, rows * bytes);
  std::vector<int32_t> src(rows);
  for (auto& r : src) r = int32_t(rng() % rows);
  int64_t moved = 0;
  for (int64_t r = 0; r < rows; ++r) moved += src[r] != r;
  tformer::GatherRowsParams p;
  p.data = data.data(), p.num_rows = rows, p.row_stride_bytes = p.bytes_per_row = bytes, p.src_rows = src.data();
  const double s = median_seconds(be, [&] { be->run(p, 0); });
  std::printf("gather_rows %ld x %ld bytes (%ld moved)               %9.3f ms %8.1f GB/s\n", long(rows), long(bytes),
              long(moved), s * 1e3, 4.0 * moved * bytes / s * 1e-9);  // each moved row: read, write, twice
}

void time_gemm(tformer::Backend* be, DType t, int64_t m, int64_t n, int64_t k) {
  lab::Buffer a(be, t, m * k), b(be, t, n * k), c(be, t, m * n);
  a.upload(lab::random_values(rng, a.size(), t)), b.upload(lab::random_values(rng, b.size(), t));
  tformer::GemmParams p;
  p.dtype = t, p.trans_b = true, p.m = m, p.n = n, p.k = k;  // x @ W^T, as a linear layer
  p.a = a.data(), p.lda = k, p.b = b.data(), p.ldb = k, p.c = c.data(), p.ldc = n;
  const double s = median_seconds(be, [&] { be->run(p, 0); });
  std::printf("gemm NT m%-6ld n%-6ld k%-6ld %-9s %9.3f ms %8.2f TFLOP/s\n", long(m), long(n), long(k),
              tformer::dtype_name(t), s * 1e3, 2.0 * m * n * k / s * 1e-12);
}

void time_layer_norm(tformer::Backend* be, DType t, int64_t rows, int64_t cols) {
  lab::Buffer x(be, t, rows * cols), r(be, t, rows * cols), g(be, t, cols), b(be, t, cols),
      out(be, t, rows * cols), sum(be, t, rows * cols);
  x.upload(lab::random_values(rng, x.size(), t)), r.upload(lab::random_values(rng, r.size(), t));
  g.upload(lab::random_values(rng, cols, t)), b.upload(lab::random_values(rng, cols, t));
  tformer::LayerNormParams p;
  p.dtype = t, p.rows = rows, p.cols = cols, p.out = out.data(), p.sum_out = sum.data();
  p.x = x.data(), p.residual = r.data(), p.gamma = g.data(), p.beta = b.data();
  const double s = median_seconds(be, [&] { be->run(p, 0); });
  const double bytes = 4.0 * rows * cols * tformer::dtype_size(t);  // x, residual in; out, sum out
  std::printf("layer_norm rows%-7ld cols%-6ld +residual %-9s %9.3f ms %8.1f GB/s\n", long(rows), long(cols),
              tformer::dtype_name(t), s * 1e3, bytes / s * 1e-9);
}

// ---------------------------------------------------------------- training kernels

void print_rate(const char* what, DType t, double s, double bytes, double flops = 0) {
  std::printf("%-52s %-9s %9.3f ms", what, tformer::dtype_name(t), s * 1e3);
  if (flops > 0) std::printf(" %8.2f TFLOP/s", flops / s * 1e-12);
  if (bytes > 0) std::printf(" %8.1f GB/s", bytes / s * 1e-9);
  std::printf("\n");
}

// Forward with lse, then the timed backward; q, k, v, out, dout and the gradients in
// separate (batch, len, heads * hd) buffers.
void time_attention_backward(tformer::Backend* be, DType t, int64_t batch, int64_t heads, int64_t hd, int64_t len,
                             bool causal) {
  const int64_t width = heads * hd, n = batch * len * width;
  lab::Buffer q(be, t, n), k(be, t, n), v(be, t, n), out(be, t, n), dout(be, t, n), dq(be, t, n), dk(be, t, n),
      dv(be, t, n), lse(be, DType::f32, batch * heads * len);
  q.upload(lab::random_values(rng, n, t)), k.upload(lab::random_values(rng, n, t));
  v.upload(lab::random_values(rng, n, t)), dout.upload(lab::random_values(rng, n, t));
  tformer::AttentionParams f;
  f.dtype = t, f.batch = batch, f.heads = heads, f.head_dim = hd, f.q_len = len, f.kv_len = len;
  f.q = q.data(), f.k = k.data(), f.v = v.data(), f.out = out.data();
  f.q_batch_stride = f.k_batch_stride = f.v_batch_stride = f.out_batch_stride = len * width;
  f.q_row_stride = f.k_row_stride = f.v_row_stride = f.out_row_stride = width;
  f.causal = causal, f.scale = float(1 / std::sqrt(double(hd))), f.lse_out = static_cast<float*>(lse.data());
  be->run(f, 0);
  tformer::AttentionBackwardParams p;
  p.fwd = f, p.fwd.lse_out = nullptr, p.lse = static_cast<const float*>(lse.data());
  p.dout = dout.data(), p.dq = dq.data(), p.dk = dk.data(), p.dv = dv.data();
  p.dout_batch_stride = p.dq_batch_stride = p.dk_batch_stride = p.dv_batch_stride = len * width;
  p.dout_row_stride = p.dq_row_stride = p.dk_row_stride = p.dv_row_stride = width;
  const double s = median_seconds(be, [&] { be->run(p, 0); }, 7, 3);
  // 7 products of (len x len x hd) per (batch, head): S and dP twice (dK/dV and dQ
  // kernels), dV, dK, dQ; the usual "useful" count is 5 (FA2's 2.5x forward).
  const double flops = 2.0 * 5 * batch * heads * len * len * hd * (causal ? 0.5 : 1.0);
  char what[96];
  std::snprintf(what, sizeof what, "attention_backward B%ld H%ld D%ld L%ld%s", long(batch), long(heads), long(hd),
                long(len), causal ? " causal" : "");
  print_rate(what, t, s, 0, flops);
}

void time_training_elementwise(tformer::Backend* be, DType t, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  const double es = double(tformer::dtype_size(t));
  lab::Buffer a(be, t, n), b(be, t, n), c(be, t, n), g(be, t, cols), vec(be, t, cols);
  lab::Buffer mean(be, DType::f32, rows), rstd(be, DType::f32, rows);
  a.upload(lab::random_values(rng, n, t)), b.upload(lab::random_values(rng, n, t));
  g.upload(lab::random_values(rng, cols, t, 1.0f, 0.2f)), vec.upload(lab::random_values(rng, cols, t));
  char what[96];

  tformer::LayerNormParams ln;
  ln.dtype = t, ln.rows = rows, ln.cols = cols, ln.out = c.data(), ln.x = a.data(), ln.gamma = g.data();
  ln.beta = vec.data(), ln.mean_out = static_cast<float*>(mean.data()), ln.rstd_out = static_cast<float*>(rstd.data());
  be->run(ln, 0);
  tformer::LayerNormBackwardParams lb;
  lb.dtype = t, lb.rows = rows, lb.cols = cols, lb.ds = c.data(), lb.dout = b.data(), lb.s = a.data();
  lb.mean = static_cast<const float*>(mean.data()), lb.rstd = static_cast<const float*>(rstd.data());
  lb.gamma = g.data(), lb.dgamma = vec.data(), lb.dbeta = vec.data();
  std::snprintf(what, sizeof what, "layer_norm_backward %ldx%ld +dgamma,dbeta", long(rows), long(cols));
  print_rate(what, t, median_seconds(be, [&] { be->run(lb, 0); }), 5.0 * n * es);

  tformer::BiasActBackwardParams ab;
  ab.dtype = t, ab.n = n, ab.act = tformer::Activation::gelu, ab.dz = c.data(), ab.dy = b.data(), ab.z = a.data();
  std::snprintf(what, sizeof what, "bias_act_backward gelu n%ld", long(n));
  print_rate(what, t, median_seconds(be, [&] { be->run(ab, 0); }), 3.0 * n * es);

  tformer::SumRowsParams sr;
  sr.dtype = t, sr.rows = rows, sr.cols = cols, sr.out = vec.data(), sr.x = b.data();
  std::snprintf(what, sizeof what, "sum_rows %ldx%ld", long(rows), long(cols));
  print_rate(what, t, median_seconds(be, [&] { be->run(sr, 0); }), double(n) * es);

  tformer::DropoutParams dp;
  dp.dtype = t, dp.n = n, dp.p = 0.1f, dp.seed = 1, dp.out = c.data(), dp.x = a.data();
  std::snprintf(what, sizeof what, "dropout p0.1 n%ld", long(n));
  print_rate(what, t, median_seconds(be, [&] { be->run(dp, 0); }), 2.0 * n * es);

  tformer::SumSquaresParams sq;
  sq.dtype = t, sq.n = n, sq.x = a.data();
  std::snprintf(what, sizeof what, "sum_squares n%ld (with its sync)", long(n));
  print_rate(what, t, median_seconds(be, [&] { be->run(sq, 0); }), double(n) * es);
}

void time_cross_entropy(tformer::Backend* be, DType t, int64_t rows, int64_t vocab) {
  lab::Buffer logits(be, t, rows * vocab), loss(be, DType::f32, rows), labels(be, DType::i32, rows);
  logits.upload(lab::random_values(rng, logits.size(), t));
  std::vector<int32_t> hl(rows);
  for (auto& l : hl) l = int32_t(rng() % vocab);
  labels.upload_i32(hl);
  tformer::CrossEntropyParams p;
  p.dtype = t, p.rows = rows, p.vocab = vocab, p.smoothing = 0.1f, p.loss = static_cast<float*>(loss.data());
  p.dlogits = logits.data(), p.logits = logits.data(), p.labels = static_cast<const int32_t*>(labels.data());
  char what[96];
  std::snprintf(what, sizeof what, "cross_entropy %ldx%ld in place", long(rows), long(vocab));
  // Each call overwrites the logits with gradients: the timing is the same work.
  print_rate(what, t, median_seconds(be, [&] { be->run(p, 0); }), 4.0 * rows * vocab * tformer::dtype_size(t));
}

void time_embedding_backward(tformer::Backend* be, DType t, int64_t rows, int64_t dim, int64_t vocab) {
  lab::Buffer dout(be, t, rows * dim), table(be, t, vocab * dim), ids(be, DType::i32, rows);
  dout.upload(lab::random_values(rng, dout.size(), t));
  std::vector<int32_t> hi(rows);
  for (auto& i : hi) i = int32_t(rng() % vocab);
  ids.upload_i32(hi);
  tformer::EmbeddingBackwardParams p;
  p.dtype = t, p.rows = rows, p.dim = dim, p.dtable = table.data(), p.dout = dout.data();
  p.ids = static_cast<const int32_t*>(ids.data());
  char what[96];
  std::snprintf(what, sizeof what, "embedding_backward %ldx%ld vocab %ld", long(rows), long(dim), long(vocab));
  print_rate(what, t, median_seconds(be, [&] { be->run(p, 0); }), 3.0 * rows * dim * tformer::dtype_size(t));
}

void time_adamw(tformer::Backend* be, int64_t n) {
  lab::Buffer param(be, DType::f32, n), grad(be, DType::f32, n), m(be, DType::f32, n), v(be, DType::f32, n);
  param.upload(lab::random_values(rng, n, DType::f32)), grad.upload(lab::random_values(rng, n, DType::f32));
  be->fill_zero(m.data(), n * 4, 0), be->fill_zero(v.data(), n * 4, 0);
  tformer::AdamWParams p;
  p.n = n, p.weight_decay = 0.01, p.param = static_cast<float*>(param.data());
  p.grad = static_cast<const float*>(grad.data()), p.m = static_cast<float*>(m.data()), p.v = static_cast<float*>(v.data());
  char what[96];
  std::snprintf(what, sizeof what, "adamw n%ld", long(n));
  print_rate(what, DType::f32, median_seconds(be, [&] { be->run(p, 0); }), 7.0 * n * 4);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    tformer::Backend* be = lab::load_backend(argc > 1 ? argv[1] : "libtformer_cuda.so");
    std::printf("%s\n", be->name().c_str());
    for (DType t : {DType::f32, DType::bf16}) {
      for (int64_t hd : {64, 128}) {
        time_attention(be, t, 8, 16, hd, 1024, 1024, false);
        time_attention(be, t, 8, 16, hd, 1024, 1024, true);
        time_attention(be, t, 64, 16, hd, 1, 1024, true);  // decode step
      }
      time_cross_attention(be, t, false), time_cross_attention(be, t, true);
      for (int64_t kv : {256, 4096, 32768}) time_decode_attention(be, t, 1, 16, 128, kv);  // batch 1: split
      time_decode_attention(be, t, 8, 8, 64, 2048);
      time_decode_attention(be, t, 64, 16, 128, 1024);  // 1024 rows: one pass
      time_decode_attention(be, t, 128, 8, 64, 100, 4);  // 32 sentences x 4 beams, cross-attention
      time_gemm(be, t, 4096, 4096, 4096);
      time_layer_norm(be, t, 16384, 4096);
    }
    time_gather_rows(be);
    const bool training = !(argc > 2 && std::string(argv[2]) == "--forward-only");
    for (DType t : {DType::f32, DType::bf16}) {  // training kernels
      if (!training) break;
      for (int64_t hd : {64, 128}) {
        time_attention_backward(be, t, 8, 16, hd, 1024, false);
        time_attention_backward(be, t, 8, 16, hd, 1024, true);
      }
      time_training_elementwise(be, t, 16384, 1024);
      time_cross_entropy(be, t, 8192, 32000);
      time_embedding_backward(be, t, 16384, 1024, 32000);
    }
    if (training) time_adamw(be, 100'000'000);
    delete be;
    return 0;
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 2;
  }
}
