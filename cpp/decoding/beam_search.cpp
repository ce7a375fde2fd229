// Beam search with the semantics of transformers' _beam_search (5.x): per step, the
// processors run on the log-softmax; the best max(2, 1 + #EOS) * beam candidates over
// all beams of a source are kept (sampled without replacement when do_sample); those
// among the first `beam` that end in EOS or reach max_length become finished
// hypotheses scored sum_logprobs / length ** length_penalty; the best `beam`
// unfinished candidates continue; a source stops taking hypotheses once its best
// running beam cannot beat its worst finished one (early_stopping=False heuristic).
#include <algorithm>
#include <cmath>
#include <limits>

#include "../ops/cpu_kernels.h"
#include "search.h"
#include "tformer/random.h"

namespace tformer::decoding {
namespace {

constexpr float kHuge = 1.0e9f;  // transformers' stand-in for "impossible"

struct Candidate {
  float score;     // accumulated log-prob (float32, as transformers)
  float key;       // what the selection ranks by (score, or score + Gumbel noise)
  int64_t flat;    // beam * V + token
};

// Keeps the k best candidates by key (ties: lower flat index first), sorted.
struct TopK {
  std::vector<Candidate> items;
  int64_t k = 0;
  static bool better(const Candidate& a, const Candidate& b) {
    return a.key > b.key || (a.key == b.key && a.flat < b.flat);
  }
  void reset(int64_t kk) {
    k = kk;
    items.clear();
  }
  void offer(const Candidate& c) {
    if (static_cast<int64_t>(items.size()) == k && !better(c, items.back())) return;
    auto pos = std::upper_bound(items.begin(), items.end(), c, better);
    items.insert(pos, c);
    if (static_cast<int64_t>(items.size()) > k) items.pop_back();
  }
};

// The k best of row[v] + base (flat index offset + v) into top. Once top is full, a
// vector pass over 64 entries at a time skips those none of which beats the worst kept
// one (nearly all of them): the row is read at memory speed instead of one branchy
// comparison per entry. Same float sums, same order, so the same candidates.
void row_top_k(const float* row, int64_t V, float base, int64_t offset, TopK& top) {
  int64_t v = 0;
  for (; v < V && static_cast<int64_t>(top.items.size()) < top.k; ++v)
    top.offer(Candidate{row[v] + base, row[v] + base, offset + v});
  constexpr int64_t kChunk = 64;
  for (; v < V; v += kChunk) {
    const int64_t n = std::min(kChunk, V - v);
    const float* x = row + v;
    float best = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : best)
    for (int64_t i = 0; i < n; ++i) best = std::max(best, x[i] + base);
    // Later entries have higher flat indices, so only a strictly greater key enters.
    if (!(best > top.items.back().key)) continue;
    for (int64_t i = 0; i < n; ++i) top.offer(Candidate{x[i] + base, x[i] + base, offset + v + i});
  }
}

struct Finished {
  float score = -kHuge;
  bool filled = false;
  std::vector<int32_t> tokens;
  std::vector<float> attention;  // (len, S)
};

struct SourceState {
  bool open = true;  // transformers' is_early_stop_heuristic_unsatisfied
  bool cancelled = false;
  std::vector<Finished> finished;
  TopK topk;
  bool all_candidates_hit = false;
};

// A cancelled source: its live beams (tokens so far) fill the n-best slots no finished
// hypothesis took, best first; the source is then closed. Runs once per cancellation.
void close_cancelled(SourceState& st, int64_t b, int64_t K, int64_t L, int64_t S, int64_t step, float lp,
                     const std::vector<int32_t>& history, const std::vector<float>& running,
                     const std::vector<float>& attention) {
  st.open = false;
  st.cancelled = true;
  const float norm = step > 0 ? static_cast<float>(std::pow(static_cast<double>(step), static_cast<double>(lp))) : 1.0f;
  size_t slot = 0;
  for (int64_t j = 0; j < K; ++j) {
    const int64_t r = b * K + j;
    if (!(running[r] > -kHuge / 2)) continue;  // a beam that never started (step 0) or ended
    while (slot < st.finished.size() && st.finished[slot].filled) ++slot;
    if (slot == st.finished.size()) break;
    Finished& f = st.finished[slot];
    f.filled = true;
    f.score = running[r] / norm;
    f.tokens.assign(history.begin() + r * (L + 1) + 1, history.begin() + r * (L + 1) + 1 + step);
    if (!attention.empty()) f.attention.assign(attention.begin() + r * L * S, attention.begin() + (r * L + step) * S);
  }
  std::stable_sort(st.finished.begin(), st.finished.end(),
                   [](const Finished& x, const Finished& y) { return x.score > y.score; });
}

}  // namespace

std::vector<GenerationResult> beam_search(const SearchInputs& in) {
  DecodeSession& session = in.session;
  const GenerationOptions& opt = in.options;
  const LogitsProcessors& proc = in.processors;
  const int64_t B = in.batch, K = opt.beam_size, V = session.vocab(), L = opt.max_length;
  const int64_t S = session.max_src_len(), R = B * K;
  const int64_t keep = std::max<int64_t>(2, 1 + static_cast<int64_t>(proc.eos().size())) * K;
  const cpu::KernelTable& kt = cpu::kernels();
  const float lp = opt.length_penalty;

  // Host state, all sized once.
  std::vector<int32_t> history(static_cast<size_t>(R * (L + 1)), in.pad_token), history_next(history.size());
  std::vector<float> running(static_cast<size_t>(R), -kHuge), running_next(static_cast<size_t>(R));
  std::vector<int32_t> feed(static_cast<size_t>(R), in.start_token), parents(static_cast<size_t>(R));
  std::vector<float> attention(opt.return_attention ? static_cast<size_t>(R * L * S) : 0), attention_next(attention.size());
  std::vector<SourceState> state(static_cast<size_t>(B));
  std::vector<TopK> row_top(static_cast<size_t>(R));  // each row's best candidates
  for (int64_t b = 0; b < B; ++b) {
    state[b].finished.resize(static_cast<size_t>(K));
    running[b * K] = 0.0f;  // only the first beam is live at the start
  }
  for (int64_t r = 0; r < R; ++r) history[static_cast<size_t>(r * (L + 1))] = in.start_token;

  for (int64_t step = 0; step < L; ++step) {
    if (!opt.cancel.empty()) {  // cancelled sources are closed with what they have; stop once none is open
      bool any_open = false;
      for (int64_t b = 0; b < B; ++b) {
        if (state[b].open && opt.source_cancelled(b))
          close_cancelled(state[b], b, K, L, S, step, lp, history, running, attention);
        any_open = any_open || state[b].open;
      }
      if (!any_open) break;
    }
    float* logp = session.step(feed.data(), step);
    const float* att = opt.return_attention ? session.attention() : nullptr;
    const bool last_step = step + 1 >= L;

    // Log-softmax, processors and the row's best `keep` candidates, row by row (while
    // the row is in cache; the best of a source are among its rows' best).
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t b = r / K, j = r % K;
      if (!state[b].open) continue;
      float* row = logp + r * V;
      session.finish_row(row);
      const float lse = kt.logsumexp(row, V);
      for (int64_t v = 0; v < V; ++v) row[v] -= lse;
      RowContext ctx;
      ctx.history = history.data() + r * (L + 1);
      ctx.history_len = step + 1;
      ctx.generated = step;
      ctx.prefix = opt.target_prefix.empty() ? nullptr : &opt.target_prefix[static_cast<size_t>(r / K)];
      proc.process(row, ctx);
      if (opt.do_sample) proc.warp(row, 1 + static_cast<int64_t>(proc.eos().size()));
      proc.renormalize(row);

      TopK& top = row_top[static_cast<size_t>(r)];
      top.reset(keep);
      const float base = running[r];
      if (!opt.do_sample) {
        row_top_k(row, V, base, j * V, top);
        continue;
      }
      for (int64_t v = 0; v < V; ++v) {  // Gumbel-top-k: sampling without replacement from softmax(score)
        Candidate c;
        c.score = row[v] + base;
        c.flat = j * V + v;
        const double u = rng::uniform01(opt.seed, opt.sample_ids.empty() ? b : opt.sample_ids[b],
                                   static_cast<uint64_t>(step), static_cast<uint64_t>(c.flat));
        c.key = std::isfinite(c.score) ? c.score - static_cast<float>(std::log(-std::log(u + 1e-300))) : c.score;
        top.offer(c);
      }
    }

    // Per source: candidates, finished hypotheses, next beams.
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) {
      SourceState& st = state[b];
      if (!st.open) {  // frozen: keep rows as they are, feed padding
        for (int64_t j = 0; j < K; ++j) {
          parents[b * K + j] = static_cast<int32_t>(b * K + j);
          running_next[b * K + j] = -kHuge;
        }
        st.all_candidates_hit = true;
        continue;
      }
      st.topk.reset(keep);
      for (int64_t j = 0; j < K; ++j)
        for (const Candidate& c : row_top[static_cast<size_t>(b * K + j)].items) st.topk.offer(c);
      std::vector<Candidate>& cand = st.topk.items;
      if (opt.do_sample)  // sampled candidates are then ranked by their scores
        std::stable_sort(cand.begin(), cand.end(), [](const Candidate& a, const Candidate& c) { return a.score > c.score; });

      // Finished hypotheses from the first K candidates that end here.
      const float norm = static_cast<float>(std::pow(static_cast<double>(step + 1), static_cast<double>(lp)));
      bool all_hit = true;
      const bool full_and_early = opt.early_stopping &&
          std::all_of(st.finished.begin(), st.finished.end(), [](const Finished& f) { return f.filled; });
      for (size_t c = 0; c < cand.size(); ++c) {
        const int32_t token = static_cast<int32_t>(cand[c].flat % V);
        const bool hit = last_step || proc.is_eos(token);
        all_hit = all_hit && hit;
        if (!hit || static_cast<int64_t>(c) >= K || full_and_early) continue;
        const float fscore = cand[c].score / norm;
        // Insert if better than the worst kept one (the list stays sorted, best first).
        auto worst = std::min_element(st.finished.begin(), st.finished.end(),
                                      [](const Finished& x, const Finished& y) { return x.score < y.score; });
        if (!(fscore > worst->score)) continue;
        const int64_t parent = b * K + cand[c].flat / V;
        Finished f;
        f.score = fscore;
        f.filled = true;
        f.tokens.assign(history.begin() + parent * (L + 1) + 1, history.begin() + parent * (L + 1) + 1 + step);
        f.tokens.push_back(token);
        if (att) {
          f.attention.assign(attention.begin() + parent * L * S, attention.begin() + (parent * L + step) * S);
          f.attention.insert(f.attention.end(), att + parent * S, att + (parent + 1) * S);
        }
        *worst = std::move(f);
        std::stable_sort(st.finished.begin(), st.finished.end(),
                         [](const Finished& x, const Finished& y) { return x.score > y.score; });
      }
      st.all_candidates_hit = all_hit;

      // The K best candidates, those that ended pushed down by 1e9, continue.
      std::vector<std::pair<float, int64_t>> next;
      next.reserve(cand.size());
      for (size_t c = 0; c < cand.size(); ++c) {
        const int32_t token = static_cast<int32_t>(cand[c].flat % V);
        const bool hit = last_step || proc.is_eos(token);
        next.emplace_back(cand[c].score + (hit ? -kHuge : 0.0f), static_cast<int64_t>(c));
      }
      std::stable_sort(next.begin(), next.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
      for (int64_t j = 0; j < K; ++j) {
        const Candidate& c = cand[static_cast<size_t>(next[static_cast<size_t>(j)].second)];
        parents[b * K + j] = static_cast<int32_t>(b * K + c.flat / V);
        running_next[b * K + j] = next[static_cast<size_t>(j)].first;
        feed[b * K + j] = static_cast<int32_t>(c.flat % V);
      }

      // transformers' heuristic (early_stopping False or True): can the best running
      // beam still beat the worst finished one?
      float min_finished = std::numeric_limits<float>::infinity();
      for (const Finished& f : st.finished) min_finished = std::min(min_finished, f.score);
      const float best_possible = running_next[b * K] / norm;
      bool improvable = false;
      for (const Finished& f : st.finished) improvable = improvable || best_possible > (f.filled ? min_finished : -kHuge);
      st.open = st.open && improvable;
      if (opt.early_stopping &&
          std::all_of(st.finished.begin(), st.finished.end(), [](const Finished& f) { return f.filled; }))
        st.open = false;
    }

    // Stop when no source can improve, or every candidate everywhere ended.
    bool any_open = false, every_hit = true;
    for (const SourceState& st : state) {
      any_open = any_open || st.open;
      every_hit = every_hit && st.all_candidates_hit;
    }
    if (!any_open || every_hit || last_step) break;

    // Reorder histories, attention rows and the KV caches to the chosen parents.
    for (int64_t r = 0; r < R; ++r) {
      const int64_t p = parents[r];
      std::copy(history.begin() + p * (L + 1), history.begin() + p * (L + 1) + step + 1,
                history_next.begin() + r * (L + 1));
      history_next[r * (L + 1) + step + 1] = feed[r];
      if (att) {
        std::copy(attention.begin() + p * L * S, attention.begin() + (p * L + step) * S,
                  attention_next.begin() + r * L * S);
        std::copy(att + p * S, att + (p + 1) * S, attention_next.begin() + (r * L + step) * S);
      }
    }
    history.swap(history_next);
    if (att) attention.swap(attention_next);
    running.swap(running_next);
    session.reorder(parents, step);
  }

  std::vector<GenerationResult> results(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    GenerationResult& res = results[static_cast<size_t>(b)];
    res.src_len = session.src_len(b);
    res.cancelled = state[b].cancelled;
    for (int64_t h = 0; h < opt.num_hypotheses; ++h) {
      Finished& f = state[b].finished[static_cast<size_t>(h)];
      const int64_t len = static_cast<int64_t>(f.tokens.size());
      if (opt.return_attention) {
        std::vector<float> a(static_cast<size_t>(len * res.src_len));
        for (int64_t t = 0; t < len && !f.attention.empty(); ++t)
          std::copy(f.attention.begin() + t * S, f.attention.begin() + t * S + res.src_len, a.begin() + t * res.src_len);
        res.attention.push_back(std::move(a));
      }
      strip_final_eos(f.tokens, proc);
      res.tokens.push_back(std::move(f.tokens));
      if (opt.return_scores) res.scores.push_back(f.score);
    }
  }
  return results;
}

}  // namespace tformer::decoding
