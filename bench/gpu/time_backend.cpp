// Timing lab for libtformer_cuda.so: median wall time of the backend's ops on random
// data (warm-up first; host clock around back-to-back calls and a synchronize()),
// with the achieved rate. Compare numbers only between runs on the same card.
//   g++ -O2 -std=c++17 -Icpp/include bench/gpu/time_backend.cpp -ldl -o /tmp/time_backend
//   /tmp/time_backend build/libtformer_cuda.so
#include <algorithm>
#include <chrono>
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
  const double s = median_seconds(be, [&] { be->attention(p, 0); });
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
  const double s = median_seconds(be, [&] { be->attention(p, 0); });
  std::printf("attention B%-3ld H%-3ld D%-4ld q1     kv%-5ld kv_group %ld%s %-9s %9.3f ms\n", long(batch),
              long(heads), long(hd), long(lk), long(group), weights ? " +weights" : "         ",
              tformer::dtype_name(t), s * 1e3);
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
  const double s = median_seconds(be, [&] { be->gather_rows(p, 0); });
  std::printf("gather_rows %ld x %ld bytes (%ld moved)               %9.3f ms %8.1f GB/s\n", long(rows), long(bytes),
              long(moved), s * 1e3, 4.0 * moved * bytes / s * 1e-9);  // each moved row: read, write, twice
}

void time_gemm(tformer::Backend* be, DType t, int64_t m, int64_t n, int64_t k) {
  lab::Buffer a(be, t, m * k), b(be, t, n * k), c(be, t, m * n);
  a.upload(lab::random_values(rng, a.size(), t)), b.upload(lab::random_values(rng, b.size(), t));
  tformer::GemmParams p;
  p.dtype = t, p.trans_b = true, p.m = m, p.n = n, p.k = k;  // x @ W^T, as a linear layer
  p.a = a.data(), p.lda = k, p.b = b.data(), p.ldb = k, p.c = c.data(), p.ldc = n;
  const double s = median_seconds(be, [&] { be->gemm(p, 0); });
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
  const double s = median_seconds(be, [&] { be->layer_norm(p, 0); });
  const double bytes = 4.0 * rows * cols * tformer::dtype_size(t);  // x, residual in; out, sum out
  std::printf("layer_norm rows%-7ld cols%-6ld +residual %-9s %9.3f ms %8.1f GB/s\n", long(rows), long(cols),
              tformer::dtype_name(t), s * 1e3, bytes / s * 1e-9);
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
      time_gemm(be, t, 4096, 4096, 4096);
      time_layer_norm(be, t, 16384, 4096);
    }
    time_gather_rows(be);
    delete be;
    return 0;
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 2;
  }
}
