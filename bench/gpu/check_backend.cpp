// Correctness lab for libtformer_cuda.so, independent of the Python bindings: every op
// of backend.h, for f32/f16/bf16, on fresh random data with NaN-poisoned outputs,
// against float64 references on the host (row movement: byte-exact); calls from
// several host threads at once; the error paths (bad dtype, bad device, out of
// memory) and allocator reuse. Prints one line per case and exits 1 on any failure.
//   g++ -O2 -std=c++17 -pthread -Icpp/include bench/gpu/check_backend.cpp -ldl -o /tmp/check_backend
//   /tmp/check_backend build/libtformer_cuda.so
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <functional>
#include <thread>

#include "lab_check.h"
#include "lab_util.h"

using tformer::Activation;
using tformer::DType;

namespace {

std::mt19937 rng(1234);
const DType kFloatTypes[] = {DType::f32, DType::f16, DType::bf16};
using lab::all_indices, lab::expect_throw, lab::failures, lab::nans, lab::report;

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
  be->run(p, 0);
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
  be->run(p, 0);
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
  be->run(p, 0);
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
  be->run(p, 0);
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
  be->run(p, 0);
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) ref[i] = lab::round_to(to, hs[i]);
  report(std::string("cast from ") + tformer::dtype_name(from), to, dst.download(), ref, all_indices(n));
}

struct AttentionCase {
  int64_t batch, heads, head_dim, q_len, kv_len;
  bool causal = false;
  int64_t offset = 0;    // causal_offset
  bool lengths = false;  // random kv_lengths (the first kv batch keeps all keys)
  int64_t kv_group = 1;
  bool weights = false;  // weights_out too
};

// kv_group 1 (self-attention): q, k, v are column slices of one fused
// (batch, len, 3 * heads * head_dim) buffer. kv_group > 1 (cross-attention of beams):
// q is (batch, q_len, heads * head_dim + 3) and k, v are slices of one fused
// (batch / kv_group, kv_len, 2 * heads * head_dim + 1) buffer, so the k/v strides count
// kv batches. weights_out is compared with the float64 softmax averaged over heads.
void check_attention(tformer::Backend* be, DType t, const AttentionCase& c) {
  const int64_t hw = c.heads * c.head_dim, kv_batch = c.batch / c.kv_group;
  const bool fused = c.kv_group == 1;
  const int64_t len = std::max(c.q_len, c.kv_len), ow = hw + 5;
  const int64_t qw = fused ? 3 * hw : hw + 3, kvw = fused ? 3 * hw : 2 * hw + 1;
  lab::Buffer qbuf(be, t, fused ? c.batch * len * qw : c.batch * c.q_len * qw);
  lab::Buffer kvbuf(be, t, fused ? 1 : kv_batch * c.kv_len * kvw);
  lab::Buffer out(be, t, c.batch * c.q_len * ow), kvl(be, DType::i32, kv_batch);
  lab::Buffer weights(be, DType::f32, c.batch * c.q_len * c.kv_len);
  const auto hq = lab::random_values(rng, qbuf.size(), t), hkv = lab::random_values(rng, kvbuf.size(), t);
  const std::vector<float>& hk = fused ? hq : hkv;
  std::vector<int32_t> hl(kv_batch);
  for (int64_t b = 0; b < kv_batch; ++b)
    hl[b] = c.lengths ? int32_t(b == 0 ? c.kv_len : rng() % (c.kv_len + 1)) : int32_t(c.kv_len);
  qbuf.upload(hq), out.upload(nans(out.size())), kvl.upload_i32(hl), weights.upload(nans(weights.size()));
  if (!fused) kvbuf.upload(hkv);

  tformer::AttentionParams p;
  p.dtype = t, p.batch = c.batch, p.heads = c.heads, p.head_dim = c.head_dim;
  p.q_len = c.q_len, p.kv_len = c.kv_len, p.kv_group = c.kv_group;
  const size_t es = tformer::dtype_size(t);
  const int64_t q_bs = fused ? len * qw : c.q_len * qw, kv_bs = fused ? len * qw : c.kv_len * kvw;
  const int64_t k0 = fused ? hw : 0, v0 = fused ? 2 * hw : hw;  // column of head 0 in k's / v's rows
  const auto kv_base = static_cast<char*>(fused ? qbuf.data() : kvbuf.data());
  p.q = qbuf.data(), p.k = kv_base + k0 * es, p.v = kv_base + v0 * es;
  p.q_batch_stride = q_bs, p.q_row_stride = qw;
  p.k_batch_stride = p.v_batch_stride = kv_bs, p.k_row_stride = p.v_row_stride = kvw;
  p.out = out.data(), p.out_batch_stride = c.q_len * ow, p.out_row_stride = ow;
  p.kv_lengths = c.lengths ? static_cast<const int32_t*>(kvl.data()) : nullptr;
  p.causal = c.causal, p.causal_offset = c.offset, p.scale = float(1 / std::sqrt(double(c.head_dim)));
  if (c.weights) p.weights_out = static_cast<float*>(weights.data());
  be->run(p, 0);

  std::vector<double> ref, ref_w(c.batch * c.q_len * c.kv_len, 0.0);
  std::vector<size_t> where;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < c.q_len; ++i)
      for (int64_t h = 0; h < c.heads; ++h) {
        const int64_t kb = b / c.kv_group;
        const float* q = &hq[b * q_bs + i * qw + h * c.head_dim];
        std::vector<double> s;
        std::vector<int64_t> keys;
        for (int64_t j = 0; j < c.kv_len; ++j) {
          if (j >= hl[kb] || (c.causal && j > i + c.offset)) continue;
          const float* k = &hk[kb * kv_bs + j * kvw + k0 + h * c.head_dim];
          double dot = 0;
          for (int64_t d = 0; d < c.head_dim; ++d) dot += double(q[d]) * k[d];
          s.push_back(dot * p.scale), keys.push_back(j);
        }
        const double mx = s.empty() ? 0 : *std::max_element(s.begin(), s.end());
        double total = 0;
        for (auto& x : s) total += (x = std::exp(x - mx));
        for (size_t n = 0; n < keys.size(); ++n)
          ref_w[(b * c.q_len + i) * c.kv_len + keys[n]] += s[n] / total / double(c.heads);
        for (int64_t d = 0; d < c.head_dim; ++d) {
          double o = 0;
          for (size_t n = 0; n < keys.size(); ++n)
            o += s[n] / total * hk[kb * kv_bs + keys[n] * kvw + v0 + h * c.head_dim + d];
          ref.push_back(o), where.push_back((b * c.q_len + i) * ow + h * c.head_dim + d);
        }
      }
  char name[128];
  std::snprintf(name, sizeof name, "attention B%ld H%ld D%ld q%ld kv%ld%s%s%s", long(c.batch), long(c.heads),
                long(c.head_dim), long(c.q_len), long(c.kv_len),
                c.causal ? (" causal" + std::to_string(c.offset)).c_str() : "", c.lengths ? " kv_lengths" : "",
                c.kv_group > 1 ? (" kv_group" + std::to_string(c.kv_group)).c_str() : "");
  report(name, t, out.download(), ref, where);
  // fp32 softmax of the same (rounded) inputs, whatever the dtype: fp32 tolerance.
  if (c.weights) report(std::string(name) + " weights_out", t, weights.download(), ref_w, all_indices(ref_w.size()), 1e-5);
}

// ---------------------------------------------------------------- row movement (byte-exact)

std::vector<uint8_t> random_bytes(size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = uint8_t(rng());
  return v;
}

void report_exact(const std::string& name, const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) bad += got[i] != want[i];
  failures += bad != 0;
  std::printf("%-4s %-58s %zu wrong byte(s)\n", bad ? "FAIL" : "ok", name.c_str(), bad);
}

// Row r <- old row src[r], in place; bytes past bytes_per_row in each row stay.
// `offset` shifts the data pointer (unaligned rows take the kernel's narrow path).
void check_gather_rows(tformer::Backend* be, const std::string& what, const std::vector<int32_t>& src,
                       int64_t stride, int64_t bytes_per_row, int64_t offset = 0) {
  const int64_t n = static_cast<int64_t>(src.size());
  lab::Buffer buf(be, DType::i8, n * stride + offset);
  const auto before = random_bytes(buf.size());
  buf.upload_bytes(before);
  tformer::GatherRowsParams p;
  p.data = static_cast<char*>(buf.data()) + offset, p.num_rows = n, p.row_stride_bytes = stride;
  p.bytes_per_row = bytes_per_row, p.src_rows = src.data();
  be->run(p, 0);
  auto want = before;
  for (int64_t r = 0; r < n; ++r)
    std::copy_n(&before[offset + src[r] * stride], bytes_per_row, &want[offset + r * stride]);
  report_exact("gather_rows " + what + " rows " + std::to_string(n) + " bytes " + std::to_string(bytes_per_row) +
                   "/" + std::to_string(stride) + (offset ? " +" + std::to_string(offset) : ""),
               buf.download_bytes(), want);
}

void check_gather_rows_all(tformer::Backend* be) {
  const std::vector<int32_t> repeats = {3, 3, 0, 9, 9, 9, 1, 2, 2, 5};  // beam parents
  for (int64_t stride : {1040, 100, 206}) check_gather_rows(be, "repeats", repeats, stride, stride - 16);
  check_gather_rows(be, "repeats", repeats, 1040, 1024, 3);
  std::vector<int32_t> identity(7);
  for (int32_t r = 0; r < 7; ++r) identity[r] = r;
  check_gather_rows(be, "identity", identity, 512, 512);
  check_gather_rows(be, "3-cycle", {1, 2, 0, 3, 4}, 4096, 4000);
  check_gather_rows(be, "3-cycle", {1, 2, 0}, 1, 1);
  std::vector<int32_t> many(1500);  // several launches' worth of moves
  for (auto& r : many) r = int32_t(rng() % many.size());
  check_gather_rows(be, "random", many, 80, 64);
}

void check_copy_2d(tformer::Backend* be, int64_t rows, int64_t dst_stride, int64_t src_stride, int64_t bytes) {
  const int64_t dst_size = std::max<int64_t>(rows * dst_stride, bytes), src_size = std::max<int64_t>(rows * src_stride, bytes);
  lab::Buffer dst(be, DType::i8, dst_size + 1), src(be, DType::i8, src_size + 1);
  const auto hd = random_bytes(dst.size()), hs = random_bytes(src.size());
  dst.upload_bytes(hd), src.upload_bytes(hs);
  tformer::Copy2dParams p;
  p.dst = static_cast<char*>(dst.data()) + 1, p.dst_stride_bytes = dst_stride;  // odd addresses
  p.src = static_cast<char*>(src.data()) + 1, p.src_stride_bytes = src_stride;
  p.rows = rows, p.bytes_per_row = bytes;
  be->run(p, 0);
  auto want = hd;
  for (int64_t r = 0; r < rows; ++r) std::copy_n(&hs[1 + r * src_stride], bytes, &want[1 + r * dst_stride]);
  report_exact("copy_2d rows " + std::to_string(rows) + " bytes " + std::to_string(bytes) + " strides " +
                   std::to_string(dst_stride) + "/" + std::to_string(src_stride),
               dst.download_bytes(), want);
}

// Several host threads at once, each with its own buffers, on the one device: gemm
// (the shared cuBLAS handle), gather_rows (allocator temporaries, two launches) and
// copy_2d. A 3-cycle applied a multiple of 3 times gives the rows back.
void check_threads(tformer::Backend* be) {
  constexpr int kHostThreads = 8, kIters = 30;
  std::atomic<int> bad{0};
  std::vector<std::thread> pool;
  std::vector<std::string> errors(kHostThreads);
  for (int th = 0; th < kHostThreads; ++th) {
    pool.emplace_back([&, th] {
      try {
        std::mt19937 local(100 + th);
        const int64_t m = 40 + th, n = 33, k = 70;
        lab::Buffer a(be, DType::f32, m * k), b(be, DType::f32, k * n), c(be, DType::f32, m * n);
        lab::Buffer rows(be, DType::i8, 6 * 300), copy(be, DType::i8, 6 * 300);
        const auto ha = lab::random_values(local, a.size(), DType::f32);
        const auto hb = lab::random_values(local, b.size(), DType::f32);
        std::vector<uint8_t> hr(rows.size());
        for (auto& x : hr) x = uint8_t(local());
        a.upload(ha), b.upload(hb), rows.upload_bytes(hr);
        tformer::GemmParams g;
        g.m = m, g.n = n, g.k = k, g.a = a.data(), g.lda = k, g.b = b.data(), g.ldb = n, g.c = c.data(), g.ldc = n;
        const std::vector<int32_t> cycle = {1, 2, 0, 4, 5, 3};
        tformer::GatherRowsParams gr;
        gr.data = rows.data(), gr.num_rows = 6, gr.row_stride_bytes = 300, gr.bytes_per_row = 296;
        gr.src_rows = cycle.data();
        tformer::Copy2dParams cp;
        cp.dst = copy.data(), cp.dst_stride_bytes = 300, cp.src = rows.data(), cp.src_stride_bytes = 300;
        cp.rows = 6, cp.bytes_per_row = 300;
        for (int it = 0; it < kIters; ++it) be->run(g, 0), be->run(gr, 0), be->run(cp, 0);
        const auto hc = c.download();
        double num = 0, den = 0;
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (int64_t l = 0; l < k; ++l) s += double(ha[i * k + l]) * hb[l * n + j];
            num += (hc[i * n + j] - s) * (hc[i * n + j] - s), den += s * s;
          }
        if (!(std::sqrt(num / den) <= 1e-5)) errors[th] = "gemm rel err " + std::to_string(std::sqrt(num / den));
        if (rows.download_bytes() != hr || copy.download_bytes() != hr) errors[th] += " rows differ";
      } catch (const std::exception& e) {
        errors[th] = e.what();
      }
      bad += !errors[th].empty();
    });
  }
  for (auto& t : pool) t.join();
  for (int th = 0; th < kHostThreads; ++th)
    if (!errors[th].empty()) std::printf("     thread %d: %s\n", th, errors[th].c_str());
  failures += bad != 0;
  std::printf("%-4s %d host threads x %d iterations of gemm + gather_rows + copy_2d\n", bad ? "FAIL" : "ok",
              kHostThreads, kIters);
}

void check_errors(tformer::Backend* be) {
  expect_throw("bad device", [&] { be->allocate(16, be->device_count()); }, "does not exist");
  expect_throw("out of memory", [&] { be->allocate(size_t(1) << 50, 0); }, "CUDA out of memory");
  tformer::LayerNormParams ln;
  ln.dtype = DType::i32, ln.rows = 1, ln.cols = 1;
  expect_throw("layer_norm int32", [&] { be->run(ln, 0); }, "int32");
  tformer::AttentionParams at;
  at.batch = at.heads = at.q_len = at.kv_len = 1, at.head_dim = 300;
  expect_throw("attention head_dim 300", [&] { be->run(at, 0); }, "head_dim 300");
  at.head_dim = 64, at.kv_group = 0;
  expect_throw("attention kv_group 0", [&] { be->run(at, 0); }, "kv_group 0");
  tformer::Copy2dParams cp;
  cp.rows = 2, cp.bytes_per_row = 8, cp.dst_stride_bytes = 4, cp.src_stride_bytes = 8;
  expect_throw("copy_2d overlapping rows", [&] { be->run(cp, 0); }, "overlap");
  const int32_t bad_rows[2] = {1, 2};
  tformer::GatherRowsParams gr;
  gr.data = &gr, gr.num_rows = 2, gr.row_stride_bytes = gr.bytes_per_row = 4, gr.src_rows = bad_rows;
  expect_throw("gather_rows index out of range", [&] { be->run(gr, 0); }, "out of range");
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
      for (int64_t hd : {32, 64, 80, 96, 128, 160, 256}) check_attention(be, t, {2, 3, hd, 37, 45});
      check_attention(be, t, {2, 2, 64, 50, 50, true, 0});
      check_attention(be, t, {3, 2, 128, 1, 77, true, 76, true, 1, true});  // decode step
      check_attention(be, t, {2, 2, 64, 20, 70, true, 50, true, 1, true});  // chunked prefill
      check_attention(be, t, {2, 1, 40, 18, 40, true, -3, true, 1, true});  // rows that see no key
      check_attention(be, t, {1, 2, 256, 130, 300, false, 0, true, 1, true});
      // Cross-attention of beams: 2 sentences x 3 beams share their sentence's K/V.
      check_attention(be, t, {6, 4, 64, 1, 45, false, 0, true, 3, true});    // decode step
      check_attention(be, t, {6, 3, 80, 9, 33, false, 0, true, 3, true});
      check_attention(be, t, {6, 2, 32, 12, 40, true, 5, true, 2, true});    // with causal too
      check_attention(be, t, {4, 5, 96, 1, 300, false, 0, false, 4, true});  // one kv batch, 9 key tiles
    }
    check_gather_rows_all(be);
    check_copy_2d(be, 7, 260, 300, 250);
    check_copy_2d(be, 5, 64, 64, 64);  // contiguous
    check_copy_2d(be, 1, 0, 0, 1000);  // one row: strides unused
    check_copy_2d(be, 0, 10, 10, 10);  // nothing to do
    check_threads(be);
    check_errors(be);
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    delete be;
    return failures ? 1 : 0;
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 2;
  }
}
