// Correctness lab for the tensor-core attention forward (cuda/attention_mma.cu), through
// Backend::attention as the core calls it: f16 and bf16, head dims 32/64/96/128 (and 40,
// 80: padded to the next one), self-attention on a fused QKV buffer (row strides of
// 3 * width + 8), causal with offsets (chunked prefill, rows that see no key), kv_lengths
// with a batch of no keys, cross-attention (q_len 5, kv_len 77), kv_group 3, lengths
// that are no multiple of the 64-row tiles, a long causal sequence, a peaked softmax,
// random shapes (seeded), and a misaligned layout and a negative scale that must take
// the CUDA-core kernel.
// Outputs and lse start as NaN; references are float64 from the rounded inputs; the
// columns around each head's output must keep their NaN. Exits 1 on a failure.
//   g++ -O2 -std=c++17 -Icpp/include bench/gpu/check_attention_mma.cpp -ldl -o /tmp/check_attention_mma
//   /tmp/check_attention_mma build/libtformer_cuda.so
// Without a GPU, bash bench/gpu/emulate/emulate.sh runs it on the CPU emulator, where it
// also asserts which kernel each case takes (attention_mma_supports).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "lab_attention_reference.h"
#include "lab_check.h"
#include "lab_util.h"

using tformer::DType;
using lab::all_indices, lab::expect, lab::nans, lab::report;

#ifdef TFORMER_LAB_EMULATED
tformer::Backend* make_emulated_backend();  // emulate/emu_backend.cpp
namespace tformer::cuda {
bool attention_mma_supports(const AttentionParams& p);  // cuda/attention_mma.h
}
#endif

namespace {

std::mt19937 rng(2024);

// Relative error bounds of the issue (f16 3e-3, bf16 1e-2): P is rounded to the input
// type before P V, so bf16's 8-bit mantissa dominates.
double out_tolerance(DType t) { return t == DType::f16 ? 3e-3 : 1e-2; }

struct Case {
  int64_t batch, heads, head_dim, q_len, kv_len;
  bool causal = false;
  int64_t offset = 0;
  bool lengths = false;  // kv_lengths: kv batch 0 all keys, 1 none, others random
  int64_t kv_group = 1;  // > 1 or cross: q in its own buffer, k / v in a fused KV buffer
  bool cross = false;
  bool misaligned = false;  // odd row strides and an output one element off: CUDA-core kernel
  float std = 1.0f;         // of q, k, v: 3 gives peaked softmaxes (scores of std ~9)
  float scale = 0.0f;       // 0: 1 / sqrt(head_dim); a negative one takes the CUDA-core kernel
  bool mma() const { return !misaligned && scale >= 0.0f; }
};

void check(tformer::Backend* be, DType t, const Case& c) {
  const int64_t hw = c.heads * c.head_dim, kv_batch = c.batch / c.kv_group, D = c.head_dim;
  const bool fused = c.kv_group == 1 && !c.cross;
  const int64_t pad = c.misaligned ? 1 : 8;
  const int64_t len = std::max(c.q_len, c.kv_len);
  const int64_t qw = fused ? 3 * hw + pad : hw + pad, kvw = fused ? qw : 2 * hw + pad;
  const int64_t q_rows = fused ? len : c.q_len, kv_rows = fused ? len : c.kv_len;
  const int64_t ow = hw + 16, o0 = c.misaligned ? 1 : 8;  // out: columns [o0, o0 + hw) of each row
  lab::Buffer qbuf(be, t, c.batch * q_rows * qw), kvbuf(be, t, fused ? 1 : kv_batch * kv_rows * kvw);
  lab::Buffer out(be, t, c.batch * c.q_len * ow), lse(be, DType::f32, c.batch * c.heads * c.q_len);
  lab::Buffer kvl(be, DType::i32, kv_batch);
  const auto hq = lab::random_values(rng, qbuf.size(), t, 0.0f, c.std);
  const auto hkv = lab::random_values(rng, kvbuf.size(), t, 0.0f, c.std);
  const std::vector<float>& hk = fused ? hq : hkv;
  std::vector<int32_t> hl(kv_batch);
  for (int64_t b = 0; b < kv_batch; ++b)
    hl[b] = !c.lengths || b == 0 ? int32_t(c.kv_len) : b == 1 ? 0 : int32_t(rng() % (c.kv_len + 1));
  qbuf.upload(hq), out.upload(nans(out.size())), lse.upload(nans(lse.size())), kvl.upload_i32(hl);
  if (!fused) kvbuf.upload(hkv);

  const size_t es = tformer::dtype_size(t);
  const int64_t k0 = fused ? hw : 0, v0 = fused ? 2 * hw : hw;  // column of head 0 in k's / v's rows
  const int64_t q_bs = q_rows * qw, kv_bs = kv_rows * kvw;
  char* kv_base = static_cast<char*>(fused ? qbuf.data() : kvbuf.data());
  tformer::AttentionParams p;
  p.dtype = t, p.batch = c.batch, p.heads = c.heads, p.head_dim = D;
  p.q_len = c.q_len, p.kv_len = c.kv_len, p.kv_group = c.kv_group;
  p.q = qbuf.data(), p.q_batch_stride = q_bs, p.q_row_stride = qw;
  p.k = kv_base + k0 * es, p.v = kv_base + v0 * es;
  p.k_batch_stride = p.v_batch_stride = kv_bs, p.k_row_stride = p.v_row_stride = kvw;
  p.out = static_cast<char*>(out.data()) + o0 * es, p.out_batch_stride = c.q_len * ow, p.out_row_stride = ow;
  p.kv_lengths = c.lengths ? static_cast<const int32_t*>(kvl.data()) : nullptr;
  p.causal = c.causal, p.causal_offset = c.offset, p.scale = c.scale != 0.0f ? c.scale : float(1 / std::sqrt(double(D)));
  p.lse_out = static_cast<float*>(lse.data());

  char name[160];
  std::snprintf(name, sizeof name, "attention B%ld H%ld D%ld q%ld kv%ld%s%s%s%s%s%s", long(c.batch), long(c.heads),
                long(D), long(c.q_len), long(c.kv_len),
                c.causal ? (" causal" + std::to_string(c.offset)).c_str() : "", c.lengths ? " kv_lengths" : "",
                c.kv_group > 1 ? (" kv_group" + std::to_string(c.kv_group)).c_str() : "", c.cross ? " cross" : "",
                c.misaligned ? " misaligned" : "", c.std != 1.0f ? " peaked" : c.scale < 0.0f ? " scale<0" : "");
#ifdef TFORMER_LAB_EMULATED
  const bool mma = tformer::cuda::attention_mma_supports(p);
  expect(mma == c.mma(), std::string(name) + " takes the " + (c.mma() ? "mma" : "CUDA-core") + " kernel",
         mma ? "mma" : "CUDA-core");
#endif
  be->run(p, 0);

  std::vector<double> ref, ref_lse;
  std::vector<size_t> where, where_lse;
  int64_t lse_inf_wrong = 0;
  const auto got_lse = lse.download();
  const lab::MaskedAttention mask{D, c.kv_len, c.kv_group, hl.data(), c.causal, c.offset, p.scale};
  const lab::HostRows q_host{hq.data(), q_bs, qw}, k_host{hk.data() + k0, kv_bs, kvw};
  const lab::HostRows v_host{hk.data() + v0, kv_bs, kvw};
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < c.q_len; ++i) {
        const lab::AttentionRow row = lab::attention_row(mask, q_host, k_host, b, h, i);
        const size_t lse_at = (b * c.heads + h) * c.q_len + i;
        if (row.keys.empty()) lse_inf_wrong += !(got_lse[lse_at] == -INFINITY);
        else ref_lse.push_back(row.lse), where_lse.push_back(lse_at);
        const std::vector<double> o = lab::attention_output(row, v_host, h, D);
        for (int64_t d = 0; d < D; ++d) ref.push_back(o[d]), where.push_back((b * c.q_len + i) * ow + o0 + h * D + d);
      }
  const auto got = out.download();
  report(name, t, got, ref, where, out_tolerance(t));
  report(std::string(name) + " lse", t, got_lse, ref_lse, where_lse, 1e-5);
  expect(lse_inf_wrong == 0, std::string(name) + " lse -inf where no key", std::to_string(lse_inf_wrong) + " wrong");
  int64_t touched = 0;  // columns outside [o0, o0 + hw) keep their NaN
  for (int64_t r = 0; r < c.batch * c.q_len; ++r)
    for (int64_t x = 0; x < ow; ++x)
      if (x < o0 || x >= o0 + hw) touched += !std::isnan(got[r * ow + x]);
  expect(touched == 0, std::string(name) + " nothing written outside the heads", std::to_string(touched) + " written");
}

}  // namespace

int main(int argc, char** argv) {
  try {
#ifdef TFORMER_LAB_EMULATED
    tformer::Backend* be = make_emulated_backend();
    (void)argc, (void)argv;
#else
    tformer::Backend* be = lab::load_backend(argc > 1 ? argv[1] : "libtformer_cuda.so");
#endif
    std::printf("%s\n", be->name().c_str());
    for (DType t : {DType::f16, DType::bf16}) {
      for (int64_t d : {32, 64, 96, 128}) {
        check(be, t, {1, 2, d, 70, 70, true, 0});                           // causal self-attention, fused QKV
        check(be, t, {3, 1, d, 50, 50, false, 0, true});                    // kv_lengths, a batch of no keys
        check(be, t, {2, 1, d, 5, 77, false, 0, true, 1, true});            // cross-attention + padding
        check(be, t, {6, 1, d, 9, 33, true, 24, true, 3});                  // kv_group 3, causal to the end
        check(be, t, {1, 1, d, 20, 70, true, 50});                          // chunked prefill
        check(be, t, {2, 1, d, 18, 40, true, -3, true});                    // rows that see no key
        check(be, t, {1, 1, d, 333, 333, true, 0});                         // long: 6 query blocks, diagonal tiles
      }
      check(be, t, {2, 2, 40, 37, 45});                                     // head_dim 40 in D = 64
      check(be, t, {1, 2, 64, 5, 0});                                       // no keys at all: zeros, lse -inf
      check(be, t, {1, 2, 80, 65, 129, false, 0, true, 1, true});           // head_dim 80 in D = 96, 3 key tiles
      check(be, t, {1, 2, 64, 37, 45, true, 8, false, 1, false, true});     // misaligned: CUDA-core kernel
      check(be, t, {1, 2, 64, 100, 200, false, 0, false, 1, false, false, 3.0f});  // peaked softmax
      check(be, t, {1, 2, 32, 40, 50, true, 10, false, 1, false, false, 1.0f, -0.3f});  // CUDA-core kernel
      // Random shapes: head_dim any multiple of 8 up to 128, lengths 2-150 / 1-150, offsets
      // around the diagonal, with or without lengths, fused, cross or kv_group 2.
      for (int n = 0; n < 12; ++n) {
        Case c{1 + int64_t(rng() % 2), 1 + int64_t(rng() % 2), 8 * (1 + int64_t(rng() % 16)),
               2 + int64_t(rng() % 149), 1 + int64_t(rng() % 150)};
        c.causal = rng() % 2, c.lengths = rng() % 2, c.cross = rng() % 3 == 0;
        c.offset = c.kv_len - c.q_len + int64_t(rng() % 11) - 5;
        if (rng() % 3 == 0) c.kv_group = 2, c.batch *= 2;
        check(be, t, c);
      }
    }
    return lab::finish(be);
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 2;
  }
}
