#include "logits_processors.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "../ops/cpu_kernels.h"

namespace tformer::decoding {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Scratch reused across calls of one thread (no allocation per step once warm).
struct Scratch {
  std::vector<uint32_t> seen;  // stamp per vocabulary entry
  uint32_t stamp = 0;
  std::vector<int32_t> order;
  std::vector<float> probs;
};

Scratch& scratch(int64_t vocab) {
  static thread_local Scratch s;
  if (static_cast<int64_t>(s.seen.size()) < vocab) {
    s.seen.assign(static_cast<size_t>(vocab), 0);
    s.stamp = 0;
  }
  if (++s.stamp == 0) {  // wrapped: clear
    std::fill(s.seen.begin(), s.seen.end(), 0);
    s.stamp = 1;
  }
  return s;
}

void force_only(float* scores, int64_t vocab, int32_t token) {
  std::fill(scores, scores + vocab, kNegInf);
  scores[token] = 0.0f;
}

}  // namespace

LogitsProcessors::LogitsProcessors(const GenerationOptions& options, int64_t vocab)
    : opt_(options), vocab_(vocab), eos_(options.eos_token_ids) {
  // transformers drops bad words that are exactly one EOS token.
  for (const auto& seq : options.bad_words_ids) {
    if (seq.empty()) continue;
    if (seq.size() == 1 && is_eos(seq[0])) continue;
    if (seq.size() == 1) banned_single_.push_back(seq[0]);
    else banned_sequences_.push_back(seq);
  }
}

bool LogitsProcessors::is_eos(int32_t token) const {
  return std::find(eos_.begin(), eos_.end(), token) != eos_.end();
}

void LogitsProcessors::process(float* scores, const RowContext& row) const {
  const float penalty = opt_.repetition_penalty;
  if (penalty != 1.0f) {
    Scratch& s = scratch(vocab_);
    for (int64_t t = 0; t < row.history_len; ++t) {
      const int32_t tok = row.history[t];
      if (tok < 0 || tok >= vocab_ || s.seen[tok] == s.stamp) continue;
      s.seen[tok] = s.stamp;
      scores[tok] = scores[tok] < 0 ? scores[tok] * penalty : scores[tok] / penalty;
    }
  }
  const int64_t n = opt_.no_repeat_ngram_size;
  if (n > 0 && row.history_len + 1 >= n) {
    // Ban every token that would complete an n-gram already in the history.
    const int32_t* h = row.history;
    const int64_t len = row.history_len;
    for (int64_t start = 0; start + n <= len; ++start) {
      bool match = true;
      for (int64_t k = 0; k < n - 1 && match; ++k) match = h[start + k] == h[len - (n - 1) + k];
      if (match) scores[h[start + n - 1]] = kNegInf;
    }
  }
  for (int32_t tok : banned_single_) scores[tok] = kNegInf;
  for (const auto& seq : banned_sequences_) {
    const int64_t plen = static_cast<int64_t>(seq.size()) - 1;
    if (plen > row.history_len) continue;
    if (std::equal(seq.begin(), seq.end() - 1, row.history + row.history_len - plen)) scores[seq.back()] = kNegInf;
  }
  if (row.generated < opt_.min_length)
    for (int32_t e : eos_) scores[e] = kNegInf;
  if (row.prefix && row.generated < static_cast<int64_t>(row.prefix->size())) {
    force_only(scores, vocab_, (*row.prefix)[static_cast<size_t>(row.generated)]);
  } else if (opt_.forced_bos_token_id >= 0 && row.generated == 0) {
    force_only(scores, vocab_, opt_.forced_bos_token_id);
  }
  if (opt_.forced_eos_token_id >= 0 && row.generated == opt_.max_length - 1)
    force_only(scores, vocab_, opt_.forced_eos_token_id);
}

void LogitsProcessors::renormalize(float* scores) const {
  if (!opt_.renormalize_logits) return;
  const float lse = cpu::kernels().logsumexp(scores, vocab_);
  for (int64_t v = 0; v < vocab_; ++v) scores[v] -= lse;
}

void LogitsProcessors::warp(float* scores, int64_t min_keep) const {
  if (opt_.sampling_temperature != 1.0f) {
    const float inv = 1.0f / opt_.sampling_temperature;
    for (int64_t v = 0; v < vocab_; ++v) scores[v] *= inv;
  }
  if (opt_.sampling_topk > 0) {
    const int64_t k = std::min(std::max(opt_.sampling_topk, min_keep), vocab_);
    Scratch& s = scratch(vocab_);
    s.probs.assign(scores, scores + vocab_);
    std::nth_element(s.probs.begin(), s.probs.begin() + (k - 1), s.probs.end(), std::greater<float>());
    const float kth = s.probs[static_cast<size_t>(k - 1)];
    for (int64_t v = 0; v < vocab_; ++v)
      if (scores[v] < kth) scores[v] = kNegInf;  // ties with the k-th stay, as in transformers
  }
  if (opt_.sampling_topp < 1.0f) {
    // Sort ascending, drop the tokens whose cumulative probability stays <= 1 - top_p,
    // always keeping the min_keep most likely.
    Scratch& s = scratch(vocab_);
    s.order.resize(static_cast<size_t>(vocab_));
    std::iota(s.order.begin(), s.order.end(), 0);
    std::stable_sort(s.order.begin(), s.order.end(), [&](int32_t a, int32_t b) { return scores[a] < scores[b]; });
    const cpu::KernelTable& kt = cpu::kernels();
    const float lse = kt.logsumexp(scores, vocab_);
    float cum = 0.0f;
    for (int64_t i = 0; i < vocab_ - min_keep; ++i) {
      const int32_t tok = s.order[static_cast<size_t>(i)];
      cum += std::exp(scores[tok] - lse);
      if (cum <= 1.0f - opt_.sampling_topp) scores[tok] = kNegInf;
      else break;
    }
  }
}

}  // namespace tformer::decoding
