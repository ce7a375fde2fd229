// Greedy decoding and sampling, one hypothesis per source, as transformers' _sample:
// the processors run on the raw logits, then argmax or a draw from their softmax.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../ops/cpu_kernels.h"
#include "search.h"
#include "tformer/random.h"

namespace tformer::decoding {
namespace {

// First maximum, as torch.argmax: a vector max over chunks of 64, and a scalar look
// only into the chunks that raise it.
int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  constexpr int64_t kChunk = 64;
  for (int64_t v = 0; v < n; v += kChunk) {
    const int64_t len = std::min(kChunk, n - v);
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < len; ++i) m = std::max(m, x[v + i]);
    if (!(m > x[best]) && v > 0) continue;
    for (int64_t i = (v == 0 ? 1 : 0); i < len; ++i)
      if (x[v + i] > x[best]) best = v + i;
  }
  return static_cast<int32_t>(best);
}

// Inverse CDF of softmax(x) at u; x is overwritten with exp(x - max). *logprob gets
// the log-probability of the drawn token.
int32_t sample(float* x, int64_t n, double u, float* logprob) {
  const cpu::KernelTable& kt = cpu::kernels();
  const float sum = kt.exp_shifted(x, n, kt.row_max(x, n));
  const double target = u * static_cast<double>(sum);
  double cum = 0.0;
  int64_t chosen = -1;
  for (int64_t v = 0; v < n; ++v) {
    if (x[v] <= 0.0f) continue;
    cum += x[v];
    chosen = v;
    if (cum > target) break;  // else: rounding at the very end of the CDF keeps the last one
  }
  if (chosen < 0) chosen = 0;  // every token banned: nothing sensible to draw
  *logprob = std::log(x[chosen]) - std::log(sum);
  return static_cast<int32_t>(chosen);
}

// One row per source: the row's history (start token first), its score and attention so
// far; a finished row is fed the pad id.
class GreedySearch final : public RequestSearch {
 public:
  explicit GreedySearch(SearchSetup setup);
  bool before_step() override;
  bool advance(float* logits, const float* pending_bias, const float* attention, int64_t attention_stride) override;
  std::vector<GenerationResult> results() override;

 private:
  int64_t V_ = 0, L_ = 0, S_ = 0;
  std::vector<int32_t> history_;  // (batch, max_length + 1)
  std::vector<char> finished_, cancelled_;
  std::vector<int64_t> length_;
  std::vector<double> score_;
  std::vector<float> attention_;  // (batch, max_length, S) when return_attention
};

GreedySearch::GreedySearch(SearchSetup setup) : RequestSearch(std::move(setup)) {
  const GenerationOptions& opt = options();
  const int64_t B = batch_;
  V_ = setup_.vocab;
  L_ = opt.max_length;
  S_ = max_src_len_;
  history_.assign(static_cast<size_t>(B * (L_ + 1)), opt.pad_token_id);
  finished_.assign(static_cast<size_t>(B), 0);
  cancelled_.assign(static_cast<size_t>(B), 0);
  length_.assign(static_cast<size_t>(B), 0);
  score_.assign(static_cast<size_t>(B), 0.0);
  attention_.assign(opt.return_attention ? static_cast<size_t>(B * L_ * S_) : 0, 0.0f);
  for (int64_t b = 0; b < B; ++b) history_[static_cast<size_t>(b * (L_ + 1))] = opt.decoder_start_token_id;
}

bool GreedySearch::before_step() {
  const GenerationOptions& opt = options();
  if (step_ >= L_) return false;
  if (opt.cancel.empty()) return true;
  // A cancelled row is finished as it stands; stop once all are.
  bool all_done = true;
  for (int64_t b = 0; b < batch_; ++b) {
    if (!finished_[b] && opt.source_cancelled(b)) finished_[b] = cancelled_[b] = 1;
    all_done = all_done && finished_[b];
  }
  return !all_done;
}

bool GreedySearch::advance(float* logits, const float* pending_bias, const float* att, int64_t att_stride) {
  const GenerationOptions& opt = options();
  const int64_t B = batch_, V = V_, L = L_, S = S_, step = step_;
  const cpu::KernelTable& kt = cpu::kernels();
  const LogitsProcessors& proc = processors_;
#pragma omp parallel for schedule(dynamic, 1) if (B > 1)
  for (int64_t b = 0; b < B; ++b) {
    if (finished_[b]) {
      feed_[b] = opt.pad_token_id;
      continue;
    }
    float* row = logits + b * V;
    add_pending_bias(row, pending_bias, V);
    RowContext ctx;
    ctx.history = history_.data() + b * (L + 1);
    ctx.history_len = step + 1;
    ctx.generated = step;
    ctx.prefix = opt.target_prefix.empty() ? nullptr : &opt.target_prefix[static_cast<size_t>(b)];
    proc.process(row, ctx);
    int32_t token;
    float logprob = 0.0f;
    if (opt.do_sample) proc.warp(row, 1);
    proc.renormalize(row);
    if (opt.do_sample) {
      const uint64_t key = opt.sample_ids.empty() ? static_cast<uint64_t>(b) : static_cast<uint64_t>(opt.sample_ids[b]);
      token = sample(row, V, rng::uniform01(opt.seed, key, static_cast<uint64_t>(step), 0), &logprob);
    } else {
      token = argmax(row, V);
      if (opt.return_scores) logprob = row[token] - kt.logsumexp(row, V);
    }
    score_[b] += logprob;
    if (att) std::copy(att + b * att_stride, att + b * att_stride + S, attention_.begin() + (b * L + step) * S);
    history_[static_cast<size_t>(b * (L + 1) + step + 1)] = token;
    length_[b] = step + 1;
    feed_[b] = token;
    if (proc.is_eos(token)) finished_[b] = 1;
  }
  bool all_done = true;
  for (int64_t b = 0; b < B; ++b) {
    all_done = all_done && finished_[b];
    // Streaming callbacks run here, on the calling thread, in source order.
    if (opt.on_token && length_[b] == step + 1 && !proc.is_eos(feed_[b])) opt.on_token(b, feed_[b]);
  }
  ++step_;
  return !all_done && step_ < L;
}

std::vector<GenerationResult> GreedySearch::results() {
  const GenerationOptions& opt = options();
  const int64_t L = L_, S = S_;
  std::vector<GenerationResult> results(static_cast<size_t>(batch_));
  for (int64_t b = 0; b < batch_; ++b) {
    GenerationResult& r = results[static_cast<size_t>(b)];
    r.src_len = setup_.src_lengths[static_cast<size_t>(b)];
    r.cancelled = cancelled_[b] != 0;
    const int32_t* h = history_.data() + b * (L + 1) + 1;
    r.tokens.emplace_back(h, h + length_[b]);
    if (opt.return_attention) {
      std::vector<float> a(static_cast<size_t>(length_[b] * r.src_len));
      for (int64_t t = 0; t < length_[b]; ++t)
        std::copy(attention_.begin() + (b * L + t) * S, attention_.begin() + (b * L + t) * S + r.src_len,
                  a.begin() + t * r.src_len);
      r.attention.push_back(std::move(a));
    }
    strip_final_eos(r.tokens.back(), processors_);
    if (opt.return_scores) r.scores.push_back(static_cast<float>(score_[b]));
  }
  return results;
}

}  // namespace

std::unique_ptr<RequestSearch> make_greedy_search(SearchSetup setup) {
  return std::make_unique<GreedySearch>(std::move(setup));
}

}  // namespace tformer::decoding
