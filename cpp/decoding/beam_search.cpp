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
  std::vector<std::pair<float, int64_t>> next;  // the candidates ranked for continuing (reused)
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


// The beams of every source, and their finished hypotheses. Row r = b * beam + j.
class BeamSearch final : public RequestSearch {
 public:
  explicit BeamSearch(SearchSetup setup);
  bool before_step() override;
  bool advance(float* logits, const float* pending_bias, const float* attention, int64_t attention_stride) override;
  std::vector<GenerationResult> results() override;

 private:
  void score_rows(float* logp, const float* pending_bias);
  void select(int64_t b, const float* att, int64_t att_stride, bool last_step);
  void reorder_rows(const float* att, int64_t att_stride);
  void stream_agreed(int64_t b);
  void stream_rest(int64_t b);

  int64_t K_ = 0, V_ = 0, L_ = 0, S_ = 0, R_ = 0, keep_ = 0;
  float lp_ = 1.0f;
  std::vector<int32_t> history_, history_next_;  // (rows, max_length + 1), start token first
  std::vector<float> running_, running_next_;    // each row's accumulated log-prob
  std::vector<float> attention_, attention_next_;  // (rows, max_length, S) when return_attention
  std::vector<SourceState> state_;
  std::vector<TopK> row_top_;  // each row's best candidates
  // Streaming: tokens of each source's best hypothesis passed to on_token so far, and
  // whether its rest went too (the source is closed).
  std::vector<int64_t> streamed_;
  std::vector<char> stream_done_;
};

BeamSearch::BeamSearch(SearchSetup setup) : RequestSearch(std::move(setup)) {
  const GenerationOptions& opt = options();
  const int64_t B = batch_;
  K_ = beam_;
  V_ = setup_.vocab;
  L_ = opt.max_length;
  S_ = max_src_len_;
  R_ = B * K_;
  keep_ = std::max<int64_t>(2, 1 + static_cast<int64_t>(processors_.eos().size())) * K_;
  lp_ = opt.length_penalty;
  history_.assign(static_cast<size_t>(R_ * (L_ + 1)), opt.pad_token_id);
  history_next_.resize(history_.size());
  running_.assign(static_cast<size_t>(R_), -kHuge);
  running_next_.resize(static_cast<size_t>(R_));
  attention_.resize(opt.return_attention ? static_cast<size_t>(R_ * L_ * S_) : 0);
  attention_next_.resize(attention_.size());
  state_.resize(static_cast<size_t>(B));
  row_top_.resize(static_cast<size_t>(R_));
  for (int64_t b = 0; b < B; ++b) {
    state_[b].finished.resize(static_cast<size_t>(K_));
    state_[b].topk.items.reserve(static_cast<size_t>(keep_ + 1));
    state_[b].next.reserve(static_cast<size_t>(keep_));
    running_[b * K_] = 0.0f;  // only the first beam is live at the start
  }
  for (TopK& top : row_top_) top.items.reserve(static_cast<size_t>(keep_ + 1));
  for (int64_t r = 0; r < R_; ++r) history_[static_cast<size_t>(r * (L_ + 1))] = opt.decoder_start_token_id;
  streamed_.assign(static_cast<size_t>(B), 0);
  stream_done_.assign(static_cast<size_t>(B), 0);
}

bool BeamSearch::before_step() {
  const GenerationOptions& opt = options();
  if (step_ >= L_) return false;
  if (opt.cancel.empty()) return true;
  // Cancelled sources are closed with what they have; stop once none is open.
  bool any_open = false;
  for (int64_t b = 0; b < batch_; ++b) {
    if (state_[b].open && opt.source_cancelled(b)) {
      close_cancelled(state_[b], b, K_, L_, S_, step_, lp_, history_, running_, attention_);
      stream_rest(b);
    }
    any_open = any_open || state_[b].open;
  }
  return any_open;
}

// Log-softmax, processors and the row's best `keep` candidates, row by row (while the row
// is in cache; the best of a source are among its rows' best).
void BeamSearch::score_rows(float* logp, const float* pending_bias) {
  const GenerationOptions& opt = options();
  const LogitsProcessors& proc = processors_;
  const cpu::KernelTable& kt = cpu::kernels();
  const int64_t K = K_, V = V_, L = L_, step = step_;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t r = 0; r < R_; ++r) {
    const int64_t b = r / K, j = r % K;
    if (!state_[b].open) continue;
    float* row = logp + r * V;
    add_pending_bias(row, pending_bias, V);
    const float lse = kt.logsumexp(row, V);
    for (int64_t v = 0; v < V; ++v) row[v] -= lse;
    RowContext ctx;
    ctx.history = history_.data() + r * (L + 1);
    ctx.history_len = step + 1;
    ctx.generated = step;
    ctx.prefix = opt.target_prefix.empty() ? nullptr : &opt.target_prefix[static_cast<size_t>(r / K)];
    proc.process(row, ctx);
    if (opt.do_sample) proc.warp(row, 1 + static_cast<int64_t>(proc.eos().size()));
    proc.renormalize(row);

    TopK& top = row_top_[static_cast<size_t>(r)];
    top.reset(keep_);
    const float base = running_[r];
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
}

// Source b's candidates, finished hypotheses and next beams (parents_, running_next_, feed_).
void BeamSearch::select(int64_t b, const float* att, int64_t att_stride, bool last_step) {
  const GenerationOptions& opt = options();
  const LogitsProcessors& proc = processors_;
  const int64_t K = K_, V = V_, L = L_, S = S_, step = step_;
  SourceState& st = state_[b];
  if (!st.open) {  // frozen: keep rows as they are (they keep their last token)
    for (int64_t j = 0; j < K; ++j) {
      parents_[b * K + j] = static_cast<int32_t>(b * K + j);
      running_next_[b * K + j] = -kHuge;
    }
    st.all_candidates_hit = true;
    return;
  }
  st.topk.reset(keep_);
  for (int64_t j = 0; j < K; ++j)
    for (const Candidate& c : row_top_[static_cast<size_t>(b * K + j)].items) st.topk.offer(c);
  std::vector<Candidate>& cand = st.topk.items;
  if (opt.do_sample)  // sampled candidates are then ranked by their scores
    std::stable_sort(cand.begin(), cand.end(), [](const Candidate& a, const Candidate& c) { return a.score > c.score; });

  // Finished hypotheses from the first K candidates that end here.
  const float norm = static_cast<float>(std::pow(static_cast<double>(step + 1), static_cast<double>(lp_)));
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
    f.tokens.assign(history_.begin() + parent * (L + 1) + 1, history_.begin() + parent * (L + 1) + 1 + step);
    f.tokens.push_back(token);
    if (att) {
      f.attention.assign(attention_.begin() + parent * L * S, attention_.begin() + (parent * L + step) * S);
      f.attention.insert(f.attention.end(), att + parent * att_stride, att + parent * att_stride + S);
    }
    *worst = std::move(f);
    std::stable_sort(st.finished.begin(), st.finished.end(),
                     [](const Finished& x, const Finished& y) { return x.score > y.score; });
  }
  st.all_candidates_hit = all_hit;

  // The K best candidates, those that ended pushed down by 1e9, continue.
  std::vector<std::pair<float, int64_t>>& next = st.next;
  next.clear();
  for (size_t c = 0; c < cand.size(); ++c) {
    const int32_t token = static_cast<int32_t>(cand[c].flat % V);
    const bool hit = last_step || proc.is_eos(token);
    next.emplace_back(cand[c].score + (hit ? -kHuge : 0.0f), static_cast<int64_t>(c));
  }
  std::stable_sort(next.begin(), next.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
  for (int64_t j = 0; j < K; ++j) {
    const Candidate& c = cand[static_cast<size_t>(next[static_cast<size_t>(j)].second)];
    parents_[b * K + j] = static_cast<int32_t>(b * K + c.flat / V);
    running_next_[b * K + j] = next[static_cast<size_t>(j)].first;
    feed_[b * K + j] = static_cast<int32_t>(c.flat % V);
  }

  // transformers' heuristic (early_stopping False or True): can the best running beam
  // still beat the worst finished one?
  float min_finished = std::numeric_limits<float>::infinity();
  for (const Finished& f : st.finished) min_finished = std::min(min_finished, f.score);
  const float best_possible = running_next_[b * K] / norm;
  bool improvable = false;
  for (const Finished& f : st.finished) improvable = improvable || best_possible > (f.filled ? min_finished : -kHuge);
  st.open = st.open && improvable;
  if (opt.early_stopping &&
      std::all_of(st.finished.begin(), st.finished.end(), [](const Finished& f) { return f.filled; }))
    st.open = false;
}

// Histories and attention rows follow the chosen parents (the caller moves the KV state).
void BeamSearch::reorder_rows(const float* att, int64_t att_stride) {
  const int64_t L = L_, S = S_, step = step_;
  reordered_ = false;
  for (int64_t r = 0; r < R_; ++r) {
    const int64_t p = parents_[r];
    reordered_ = reordered_ || p != r;
    std::copy(history_.begin() + p * (L + 1), history_.begin() + p * (L + 1) + step + 1,
              history_next_.begin() + r * (L + 1));
    history_next_[r * (L + 1) + step + 1] = feed_[r];
    if (att) {
      std::copy(attention_.begin() + p * L * S, attention_.begin() + (p * L + step) * S,
                attention_next_.begin() + r * L * S);
      std::copy(att + p * att_stride, att + p * att_stride + S, attention_next_.begin() + (r * L + step) * S);
    }
  }
  history_.swap(history_next_);
  if (att) attention_.swap(attention_next_);
  running_.swap(running_next_);
}

bool BeamSearch::advance(float* logp, const float* pending_bias, const float* att, int64_t att_stride) {
  const bool last_step = step_ + 1 >= L_;
  score_rows(logp, pending_bias);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < batch_; ++b) select(b, att, att_stride, last_step);

  // Stop when no source can improve, or every candidate everywhere ended.
  bool any_open = false, every_hit = true;
  for (const SourceState& st : state_) {
    any_open = any_open || st.open;
    every_hit = every_hit && st.all_candidates_hit;
  }
  const bool done = !any_open || every_hit || last_step;
  if (!done) reorder_rows(att, att_stride);
  ++step_;
  if (options().on_token) {  // on the calling thread, in source order
    for (int64_t b = 0; b < batch_; ++b) {
      if (done || !state_[b].open) stream_rest(b);
      else stream_agreed(b);
    }
  }
  if (done) reordered_ = false;
  return !done;
}

// Streams the tokens that every row of source b and every finished hypothesis it keeps
// agree on: whatever the search does next, its best hypothesis starts with them. A row
// whose score is -inf is left out (its descendants all score -inf: none can become a
// finished hypothesis); rows pushed down by 1e9 are not (a large length penalty can
// still make one win). Stops at an EOS (a final EOS is never streamed).
void BeamSearch::stream_agreed(int64_t b) {
  if (stream_done_[b]) return;
  const int64_t K = K_, L = L_;
  const std::vector<Finished>& finished = state_[b].finished;
  const auto live = [this](int64_t r) { return running_[r] != -std::numeric_limits<float>::infinity(); };
  int64_t p = streamed_[b];
  for (; p < step_; ++p) {  // rows hold step_ generated tokens
    int32_t token = -1;  // the one every contributor has at p; -1: none seen yet
    bool agreed = true;
    const auto agree = [&](int32_t t) {
      if (token == -1) token = t;
      agreed = agreed && t == token;
    };
    for (int64_t r = b * K; r < (b + 1) * K && agreed; ++r)
      if (live(r)) agree(history_[static_cast<size_t>(r * (L + 1) + 1 + p)]);
    for (const Finished& f : finished) {
      if (!f.filled || !agreed) continue;
      if (static_cast<int64_t>(f.tokens.size()) <= p) agreed = false;
      else agree(f.tokens[static_cast<size_t>(p)]);
    }
    if (!agreed || token == -1 || processors_.is_eos(token)) break;
    options().on_token(b, token);
  }
  streamed_[b] = p;
}

// Source b is closed: its best hypothesis is final; streams what is left of it.
void BeamSearch::stream_rest(int64_t b) {
  if (!options().on_token || stream_done_[b]) return;
  stream_done_[b] = 1;
  const std::vector<int32_t>& best = state_[b].finished.front().tokens;
  int64_t end = static_cast<int64_t>(best.size());
  if (end > 0 && processors_.is_eos(best.back())) --end;
  for (int64_t p = streamed_[b]; p < end; ++p) options().on_token(b, best[static_cast<size_t>(p)]);
  streamed_[b] = std::max(streamed_[b], end);
}

std::vector<GenerationResult> BeamSearch::results() {
  const GenerationOptions& opt = options();
  const int64_t S = S_;
  std::vector<GenerationResult> results(static_cast<size_t>(batch_));
  for (int64_t b = 0; b < batch_; ++b) {
    GenerationResult& res = results[static_cast<size_t>(b)];
    res.src_len = setup_.src_lengths[static_cast<size_t>(b)];
    res.cancelled = state_[b].cancelled;
    for (int64_t h = 0; h < opt.num_hypotheses; ++h) {
      Finished& f = state_[b].finished[static_cast<size_t>(h)];
      const int64_t len = static_cast<int64_t>(f.tokens.size());
      if (opt.return_attention) {
        std::vector<float> a(static_cast<size_t>(len * res.src_len));
        for (int64_t t = 0; t < len && !f.attention.empty(); ++t)
          std::copy(f.attention.begin() + t * S, f.attention.begin() + t * S + res.src_len, a.begin() + t * res.src_len);
        res.attention.push_back(std::move(a));
      }
      strip_final_eos(f.tokens, processors_);
      res.tokens.push_back(std::move(f.tokens));
      if (opt.return_scores) res.scores.push_back(f.score);
    }
  }
  return results;
}

}  // namespace

std::unique_ptr<RequestSearch> make_beam_search(SearchSetup setup) {
  return std::make_unique<BeamSearch>(std::move(setup));
}

}  // namespace tformer::decoding
