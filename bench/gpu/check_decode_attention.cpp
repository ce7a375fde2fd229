// Correctness lab for the decode-step attention (cuda/attention_decode.cu: q_len 1,
// split along the keys or not) through Backend::attention, against a float64 reference
// written from backend.h's AttentionParams: f32/f16/bf16, head_dim 32 to 256 (80
// included), kv_len 0 to 4097, kv_lengths (a batch of no keys: zeros and lse -inf),
// causal offsets, beams sharing K/V (kv_group 4 and 5), rows that are slices of fused
// buffers (16-byte loads) or of misaligned ones (element loads), lse_out (or null), weights_out
// (still attention.cu's kernel) and NaN-poisoned outputs with nothing written past a head;
// paged K/V through block tables against the same keys contiguous (check_paged).
// On the emulator, EMU_SM_COUNT per case forces one pass (1 multiprocessor) or splits
// (the default 132). Exits 1 on a failure.
//   g++ -O2 -std=c++17 -Icpp/include bench/gpu/check_decode_attention.cpp -ldl -o /tmp/check_decode
//   /tmp/check_decode build/libtformer_cuda.so
// Without a GPU, bash bench/gpu/emulate/emulate.sh runs it on the CPU emulator.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "lab_attention_reference.h"
#include "lab_check.h"
#include "lab_util.h"

using tformer::DType;
using lab::expect, lab::nans, lab::report;

#ifdef TFORMER_LAB_EMULATED
tformer::Backend* make_emulated_backend();  // emulate/emu_backend.cpp
#endif

namespace {

std::mt19937 rng(2024);
const DType kFloatTypes[] = {DType::f32, DType::f16, DType::bf16};

double out_tolerance(DType t) { return t == DType::f32 ? 1e-5 : t == DType::f16 ? 3e-3 : 1e-2; }

enum class Layout {
  fused,       // k, v column slices of one (kv_batch, kv_len, 3 * hw + 8) buffer (the QKV projection)
  cache,       // k, v in one (kv_batch, max_len, 2 * hw) cache with max_len > kv_len
  misaligned,  // as fused with an odd row width: every row one element off 16 bytes
};

struct DecodeCase {
  int64_t batch, heads, head_dim, kv_len;
  Layout layout = Layout::fused;
  int64_t kv_group = 1;
  bool lengths = false;  // kv_lengths: kv batch 0 all keys, 1 none, the others random
  bool causal = false;
  int64_t offset = 0;    // causal_offset: the row sees keys j <= offset
  int sms = 0;           // emulator only: multiprocessors (1: one pass); 0: its default 132
  bool weights = false;  // weights_out too
  bool lse = true;       // lse_out given
};

void check_decode(tformer::Backend* be, DType t, const DecodeCase& c) {
  const int64_t hw = c.heads * c.head_dim, kv_batch = c.batch / c.kv_group;
  const bool odd = c.layout == Layout::misaligned;
  const int64_t kvw = c.layout == Layout::cache ? 2 * hw : 3 * hw + (odd ? 1 : 8);
  const int64_t kv_rows = c.layout == Layout::cache ? c.kv_len + 5 : c.kv_len;  // per kv batch
  const int64_t k0 = c.layout == Layout::cache ? 0 : hw + odd, v0 = c.layout == Layout::cache ? hw : 2 * hw + odd;
  const int64_t qw = hw + (odd ? 3 : 8), q0 = odd, ow = hw + (odd ? 5 : 8), o0 = odd;
  lab::Buffer qbuf(be, t, c.batch * qw), kvbuf(be, t, std::max<int64_t>(1, kv_batch * kv_rows * kvw));
  lab::Buffer out(be, t, c.batch * ow), lse(be, DType::f32, c.batch * c.heads), kvl(be, DType::i32, kv_batch);
  lab::Buffer weights(be, DType::f32, std::max<int64_t>(1, c.batch * c.kv_len));
  const auto hq = lab::random_values(rng, qbuf.size(), t, 0.0f, 2.0f);  // sharp softmax rows too
  const auto hkv = lab::random_values(rng, kvbuf.size(), t);
  std::vector<int32_t> hl(kv_batch, int32_t(c.kv_len));
  for (int64_t b = 1; c.lengths && b < kv_batch; ++b) hl[b] = b == 1 ? 0 : int32_t(rng() % (c.kv_len + 1));
  qbuf.upload(hq), kvbuf.upload(hkv), kvl.upload_i32(hl);
  out.upload(nans(out.size())), lse.upload(nans(lse.size())), weights.upload(nans(weights.size()));

  const size_t es = tformer::dtype_size(t);
  tformer::AttentionParams p;
  p.dtype = t, p.batch = c.batch, p.heads = c.heads, p.head_dim = c.head_dim, p.q_len = 1, p.kv_len = c.kv_len;
  p.q = static_cast<char*>(qbuf.data()) + q0 * es, p.q_batch_stride = qw, p.q_row_stride = qw;
  p.k = static_cast<char*>(kvbuf.data()) + k0 * es, p.v = static_cast<char*>(kvbuf.data()) + v0 * es;
  p.k_batch_stride = p.v_batch_stride = kv_rows * kvw, p.k_row_stride = p.v_row_stride = kvw;
  p.out = static_cast<char*>(out.data()) + o0 * es, p.out_batch_stride = ow, p.out_row_stride = ow;
  p.kv_lengths = c.lengths ? static_cast<const int32_t*>(kvl.data()) : nullptr;
  p.causal = c.causal, p.causal_offset = c.offset, p.scale = float(1 / std::sqrt(double(c.head_dim)));
  p.kv_group = c.kv_group;
  if (c.lse) p.lse_out = static_cast<float*>(lse.data());
  if (c.weights) p.weights_out = static_cast<float*>(weights.data());
#ifdef TFORMER_LAB_EMULATED
  if (c.sms > 0) setenv("EMU_SM_COUNT", std::to_string(c.sms).c_str(), 1);
  else unsetenv("EMU_SM_COUNT");
#endif
  be->run(p, 0);

  std::vector<double> ref_out, ref_lse, ref_w(c.batch * c.kv_len, 0.0);
  std::vector<size_t> where_out, no_key_rows;
  const lab::MaskedAttention mask{c.head_dim, c.kv_len, c.kv_group, hl.data(), c.causal, c.offset, p.scale};
  const lab::HostRows q_host{hq.data() + q0, qw, qw}, k_host{hkv.data() + k0, kv_rows * kvw, kvw};
  const lab::HostRows v_host{hkv.data() + v0, kv_rows * kvw, kvw};
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t h = 0; h < c.heads; ++h) {
      const lab::AttentionRow row = lab::attention_row(mask, q_host, k_host, b, h, 0);
      ref_lse.push_back(row.lse);
      if (row.keys.empty()) no_key_rows.push_back(b * c.heads + h);
      for (size_t n = 0; n < row.keys.size(); ++n) ref_w[b * c.kv_len + row.keys[n]] += row.prob[n] / double(c.heads);
      const std::vector<double> o = lab::attention_output(row, v_host, h, c.head_dim);
      for (int64_t d = 0; d < c.head_dim; ++d) ref_out.push_back(o[d]), where_out.push_back(b * ow + o0 + h * c.head_dim + d);
    }

  static const char* kLayouts[] = {"fused", "cache", "misaligned"};
  char name[160];
  std::snprintf(name, sizeof name, "decode B%ld H%ld D%ld kv%ld %s%s%s%s%s", long(c.batch), long(c.heads),
                long(c.head_dim), long(c.kv_len), kLayouts[int(c.layout)], c.lengths ? " kv_lengths" : "",
                c.causal ? (" causal" + std::to_string(c.offset)).c_str() : "",
                c.kv_group > 1 ? (" kv_group" + std::to_string(c.kv_group)).c_str() : "",
#ifdef TFORMER_LAB_EMULATED
                c.sms > 0 ? (" " + std::to_string(c.sms) + " SMs").c_str() : " 132 SMs"
#else
                ""
#endif
  );
  const auto got = out.download();
  report(name, t, got, ref_out, where_out, out_tolerance(t));

  // lse: fp32 math on the rounded inputs in every dtype; rows without a key exactly -inf.
  const auto got_lse = lse.download();
  std::vector<double> finite_ref;
  std::vector<size_t> finite_at;
  int64_t bad_no_key = 0;
  for (size_t r = 0; r < ref_lse.size(); ++r) {
    if (std::isfinite(ref_lse[r])) finite_ref.push_back(ref_lse[r]), finite_at.push_back(r);
    else bad_no_key += !(std::isinf(got_lse[r]) && got_lse[r] < 0);
  }
  if (!c.lse) bad_no_key = 0;  // null lse_out: only the output is checked
  else if (!finite_at.empty()) report(std::string(name) + " lse", t, got_lse, finite_ref, finite_at, 2e-5);
  // Rows that see no key: exact zeros.
  for (size_t r : no_key_rows)
    for (int64_t d = 0; d < c.head_dim; ++d) {
      const int64_t b = r / c.heads, h = r % c.heads;
      bad_no_key += got[b * ow + o0 + h * c.head_dim + d] != 0.0f;
    }
  if (!no_key_rows.empty())
    expect(bad_no_key == 0, std::string(name) + " rows without keys: 0 and lse -inf",
           std::to_string(no_key_rows.size()) + " rows, " + std::to_string(bad_no_key) + " wrong values");
  // Nothing written outside the heads' columns.
  int64_t touched = 0;
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t col = 0; col < ow; ++col)
      touched += (col < o0 || col >= o0 + hw) && !std::isnan(got[b * ow + col]);
  expect(touched == 0, std::string(name) + " nothing written past the heads", std::to_string(touched) + " written");
  if (c.weights)
    report(std::string(name) + " weights_out", t, weights.download(), ref_w, lab::all_indices(ref_w.size()), 1e-5);
}

// Paged K/V (AttentionParams::block_table): the same keys once contiguous (a cache of
// (batch, blocks_per_row * block_size, 2 * hw)) and once scattered over a pool of (blocks,
// block_size, 2 * hw) in shuffled block order, rows 0 and 1 sharing their first block, table
// entries past each length -1: the outputs and weights_out must be equal bit for bit (same
// kv_len, so the same key splits), with per-row rel-bias origins too. The contiguous path
// itself is checked against float64 above; the engine's decode steps rely on this equality.
void check_paged(tformer::Backend* be, DType t, int64_t batch, int64_t heads, int64_t head_dim, int64_t kv_len,
                 int64_t block_size, bool rel_bias) {
  const int64_t hw = heads * head_dim, w = 2 * hw, bpr = (kv_len + block_size - 1) / block_size;
  const int64_t rows = bpr * block_size;  // per batch, both layouts
  std::vector<int32_t> hl(batch);
  for (int64_t b = 0; b < batch; ++b) hl[b] = b == 2 ? 0 : int32_t(1 + rng() % kv_len);
  hl[0] = int32_t(kv_len);
  const int64_t blocks = batch * bpr + 3;
  std::vector<int32_t> ids(blocks), table(batch * bpr, -1);
  for (int64_t i = 0; i < blocks; ++i) ids[i] = int32_t(i);
  std::shuffle(ids.begin(), ids.end(), rng);
  int64_t next = 0;
  const bool share = kv_len >= block_size;  // row 0's first block is full: row 1 shares it
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t x = 0; x * block_size < hl[b]; ++x) table[b * bpr + x] = b == 1 && x == 0 && share ? table[0] : ids[next++];

  const auto hq = lab::random_values(rng, batch * hw, t, 0.0f, 2.0f);
  std::vector<float> hkv = lab::random_values(rng, batch * rows * w, t);
  if (share) std::copy_n(hkv.begin(), block_size * w, hkv.begin() + rows * w);  // row 1's first block = row 0's
  std::vector<float> hpool = lab::random_values(rng, blocks * block_size * w, t);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < hl[b]; ++j) {
      const int64_t slot = table[b * bpr + j / block_size] * block_size + j % block_size;
      std::copy_n(hkv.begin() + (b * rows + j) * w, w, hpool.begin() + slot * w);
    }
  const int64_t span = kv_len + 1;
  const auto hbias = lab::random_values(rng, span * heads, t);
  std::vector<int32_t> origins(batch);
  for (int64_t b = 0; b < batch; ++b) origins[b] = int32_t(span - std::max<int32_t>(hl[b], 1));

  lab::Buffer q(be, t, hq.size()), kv(be, t, hkv.size()), pool(be, t, hpool.size()), bias(be, t, hbias.size());
  lab::Buffer lengths(be, DType::i32, batch), tab(be, DType::i32, table.size()), org(be, DType::i32, batch);
  lab::Buffer out_c(be, t, batch * hw), out_p(be, t, batch * hw);
  lab::Buffer w_c(be, DType::f32, batch * rows), w_p(be, DType::f32, batch * rows);
  q.upload(hq), kv.upload(hkv), pool.upload(hpool), bias.upload(hbias);
  lengths.upload_i32(hl), tab.upload_i32(table), org.upload_i32(origins);

  const size_t es = tformer::dtype_size(t);
  tformer::AttentionParams p;
  p.dtype = t, p.batch = batch, p.heads = heads, p.head_dim = head_dim, p.q_len = 1, p.kv_len = rows;
  p.q = q.data(), p.q_batch_stride = p.q_row_stride = hw;
  p.kv_lengths = static_cast<const int32_t*>(lengths.data());
  p.scale = float(1 / std::sqrt(double(head_dim)));
  if (rel_bias) {
    p.rel_bias = bias.data(), p.rel_bias_span = span;
    p.rel_bias_origins = static_cast<const int32_t*>(org.data());
  }
  p.out_batch_stride = p.out_row_stride = hw;
  tformer::AttentionParams c = p;
  c.k = kv.data(), c.v = static_cast<char*>(kv.data()) + hw * es;
  c.k_batch_stride = c.v_batch_stride = rows * w, c.k_row_stride = c.v_row_stride = w;
  c.out = out_c.data(), c.weights_out = static_cast<float*>(w_c.data());
  p.k = pool.data(), p.v = static_cast<char*>(pool.data()) + hw * es;
  p.k_batch_stride = p.v_batch_stride = block_size * w, p.k_row_stride = p.v_row_stride = w;
  p.block_table = static_cast<const int32_t*>(tab.data()), p.blocks_per_row = bpr, p.block_size = block_size;
  p.out = out_p.data(), p.weights_out = static_cast<float*>(w_p.data());
  be->run(c, 0);
  be->run(p, 0);

  char name[160];
  std::snprintf(name, sizeof name, "paged B%ld H%ld D%ld kv%ld block%ld%s", long(batch), long(heads),
                long(head_dim), long(kv_len), long(block_size), rel_bias ? " rel_bias per-row origins" : "");
  auto differing = [](const std::vector<float>& a, const std::vector<float>& b) {
    int64_t n = 0;
    for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return std::to_string(n) + " values differ";
  };
  const auto oc = out_c.download(), op = out_p.download(), wc = w_c.download(), wp = w_p.download();
  expect(oc == op, std::string(name) + " equals contiguous bit for bit", differing(oc, op));
  expect(wc == wp, std::string(name) + " weights_out equal", differing(wc, wp));
}

}  // namespace

int main(int argc, char** argv) {
  try {
#ifdef TFORMER_LAB_EMULATED
    // The emulator is slow: f32 and the half types at fewer head sizes unless --all.
    tformer::Backend* be = make_emulated_backend();
    const bool all = argc > 1 && std::string(argv[1]) == "--all";
    constexpr bool kEmulated = true;
#else
    tformer::Backend* be = lab::load_backend(argc > 1 ? argv[1] : "libtformer_cuda.so");
    const bool all = true;
    constexpr bool kEmulated = false;
#endif
    std::printf("%s\n", be->name().c_str());
    for (DType t : kFloatTypes) {
      const bool full = all || t == DType::f32;
      for (int64_t hd : {32, 64, 80, 96, 128, 256})
        if (full || hd == 64 || hd == 80 || hd == 256) check_decode(be, t, {3, 3, hd, 1000, Layout::fused, 1, true});
      for (int64_t kv : {1, 7, 33, 4097}) check_decode(be, t, {2, 2, 64, kv, Layout::cache});
      check_decode(be, t, {1, 1, 64, 0, Layout::cache});                                      // no keys at all
      check_decode(be, t, {1, 2, 128, 4097, Layout::cache, 1, false, false, 0, 1});           // one pass, long
      check_decode(be, t, {3, 2, 96, 77, Layout::fused, 1, true, true, 50});                  // causal + lengths
      check_decode(be, t, {2, 2, 64, 40, Layout::fused, 1, false, true, -1});                 // no key: causal
      check_decode(be, t, {12, 2, 64, 300, Layout::fused, 4, true});                          // beams share K/V
      check_decode(be, t, {8, 2, 128, 300, Layout::fused, 4, true, false, 0, 1});             // one pass
      check_decode(be, t, {10, 1, 64, 50, Layout::cache, 5});                                 // 5 beams: 4 + 1
      check_decode(be, t, {3, 3, 80, 1000, Layout::misaligned, 1, true});                     // element loads
      check_decode(be, t, {3, 3, 80, 33, Layout::misaligned, 1, true, false, 0, 1});
      check_decode(be, t, {8, 2, 96, 300, Layout::misaligned, 4, true, true, 200});
      check_decode(be, t, {3, 2, 64, 45, Layout::fused, 1, true, false, 0, 0, true});         // + weights_out
      check_decode(be, t, {3, 2, 64, 45, Layout::fused, 1, true, false, 0, 1, true});
      check_decode(be, t, {3, 2, 64, 1000, Layout::cache, 1, true, false, 0, 0, false, false});  // no lse_out
      // 512 (batch, head) rows fill any GPU: one pass there (emulated: too slow, and
      // the one-pass path is covered above).
      if (!kEmulated) check_decode(be, t, {64, 8, 64, 2000, Layout::cache, 1, true});
      for (bool bias : {false, true}) {
        check_paged(be, t, 5, 2, 64, 48, 16, bias);
        check_paged(be, t, 4, 3, 13, 64, 1, bias);    // one key per block, element loads
        check_paged(be, t, 3, 2, 64, 50, 32, bias);   // a partial last block
      }
    }
    return lab::finish(be);
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 2;
  }
}
