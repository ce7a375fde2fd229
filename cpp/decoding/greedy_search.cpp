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

}  // namespace

std::vector<GenerationResult> greedy_search(const SearchInputs& in) {
  DecodeSession& session = in.session;
  const GenerationOptions& opt = in.options;
  const int64_t B = in.batch, V = session.vocab(), L = opt.max_length, S = session.max_src_len();
  const cpu::KernelTable& kt = cpu::kernels();

  std::vector<int32_t> history(static_cast<size_t>(B * (L + 1)), in.pad_token);
  std::vector<int32_t> feed(static_cast<size_t>(B), in.start_token);
  std::vector<char> finished(static_cast<size_t>(B), 0);
  std::vector<char> cancelled(static_cast<size_t>(B), 0);
  std::vector<int64_t> length(static_cast<size_t>(B), 0);
  std::vector<double> score(static_cast<size_t>(B), 0.0);
  std::vector<float> attention(opt.return_attention ? static_cast<size_t>(B * L * S) : 0);
  for (int64_t b = 0; b < B; ++b) history[static_cast<size_t>(b * (L + 1))] = in.start_token;

  for (int64_t step = 0; step < L; ++step) {
    if (!opt.cancel.empty()) {  // a cancelled row is finished as it stands; stop once all are
      bool all_done = true;
      for (int64_t b = 0; b < B; ++b) {
        if (!finished[b] && opt.source_cancelled(b)) finished[b] = cancelled[b] = 1;
        all_done = all_done && finished[b];
      }
      if (all_done) break;
    }
    float* logits = session.step(feed.data(), step);
    const float* att = opt.return_attention ? session.attention() : nullptr;
#pragma omp parallel for schedule(dynamic, 1) if (B > 1)
    for (int64_t b = 0; b < B; ++b) {
      if (finished[b]) {
        feed[b] = in.pad_token;
        continue;
      }
      float* row = logits + b * V;
      session.finish_row(row);
      RowContext ctx;
      ctx.history = history.data() + b * (L + 1);
      ctx.history_len = step + 1;
      ctx.generated = step;
      ctx.prefix = opt.target_prefix.empty() ? nullptr : &opt.target_prefix[static_cast<size_t>(b)];
      in.processors.process(row, ctx);
      int32_t token;
      float logprob = 0.0f;
      if (opt.do_sample) in.processors.warp(row, 1);
      in.processors.renormalize(row);
      if (opt.do_sample) {
        const uint64_t key = opt.sample_ids.empty() ? static_cast<uint64_t>(b) : static_cast<uint64_t>(opt.sample_ids[b]);
        token = sample(row, V, rng::uniform01(opt.seed, key, static_cast<uint64_t>(step), 0), &logprob);
      } else {
        token = argmax(row, V);
        if (opt.return_scores) logprob = row[token] - kt.logsumexp(row, V);
      }
      score[b] += logprob;
      if (att) std::copy(att + b * S, att + (b + 1) * S, attention.begin() + (b * L + step) * S);
      history[static_cast<size_t>(b * (L + 1) + step + 1)] = token;
      length[b] = step + 1;
      feed[b] = token;
      if (in.processors.is_eos(token)) finished[b] = 1;
    }
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      all_done = all_done && finished[b];
      // Streaming callbacks run here, on the calling thread, in source order.
      if (opt.on_token && length[b] == step + 1 && !in.processors.is_eos(feed[b])) opt.on_token(b, feed[b]);
    }
    if (all_done) break;
  }

  std::vector<GenerationResult> results(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    GenerationResult& r = results[static_cast<size_t>(b)];
    r.src_len = session.src_len(b);
    r.cancelled = cancelled[b] != 0;
    const int32_t* h = history.data() + b * (L + 1) + 1;
    r.tokens.emplace_back(h, h + length[b]);
    if (opt.return_attention) {
      std::vector<float> a(static_cast<size_t>(length[b] * r.src_len));
      for (int64_t t = 0; t < length[b]; ++t)
        std::copy(attention.begin() + (b * L + t) * S, attention.begin() + (b * L + t) * S + r.src_len,
                  a.begin() + t * r.src_len);
      r.attention.push_back(std::move(a));
    }
    strip_final_eos(r.tokens.back(), in.processors);
    if (opt.return_scores) r.scores.push_back(static_cast<float>(score[b]));
  }
  return results;
}

std::vector<GenerationResult> cancelled_results(const TokenBatch& src, const GenerationOptions& options,
                                                int64_t batch) {
  std::vector<GenerationResult> results(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    GenerationResult& r = results[static_cast<size_t>(b)];
    r.cancelled = true;
    if (static_cast<int64_t>(src.lengths.size()) == batch) r.src_len = src.lengths[static_cast<size_t>(b)];
    r.tokens.resize(static_cast<size_t>(options.num_hypotheses));
    if (options.return_scores)
      r.scores.assign(static_cast<size_t>(options.num_hypotheses), -std::numeric_limits<float>::infinity());
    if (options.return_attention) r.attention.resize(static_cast<size_t>(options.num_hypotheses));
  }
  return results;
}

void strip_final_eos(std::vector<int32_t>& tokens, const LogitsProcessors& processors) {
  if (!tokens.empty() && processors.is_eos(tokens.back())) tokens.pop_back();
}

}  // namespace tformer::decoding
