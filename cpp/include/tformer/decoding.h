// Options and results of generation (greedy, beam search, sampling), with the
// semantics of transformers' generate (see docs/DECODING.md).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "tformer/cancel.h"

namespace tformer {

// The largest beam: beam search keeps 2 x beam candidates sorted per source and step
// (quadratic in the beam), and rows x max_length of KV cache are allocated up front.
constexpr int64_t kMaxBeamSize = 1024;

struct GenerationOptions {
  int64_t beam_size = 4;
  int64_t max_length = 256;  // generated tokens, EOS included, start token not
  int64_t min_length = 0;    // EOS forbidden until this many tokens were generated
  float length_penalty = 1.0f;
  int64_t num_hypotheses = 1;
  bool early_stopping = false;
  bool do_sample = false;
  int64_t sampling_topk = 0;  // 0: no cut
  float sampling_topp = 1.0f;
  float sampling_temperature = 1.0f;
  uint64_t seed = 0;
  std::vector<int64_t> sample_ids;  // per source: the key of its random stream (default: its index)
  std::vector<std::vector<int32_t>> target_prefix;  // empty, or one list per source (forced tokens)
  int64_t no_repeat_ngram_size = 0;
  float repetition_penalty = 1.0f;
  bool renormalize_logits = false;  // log-softmax again after the processors (opus-mt's configs set it)
  std::vector<std::vector<int32_t>> bad_words_ids;
  int32_t forced_bos_token_id = -1;  // -1: none
  int32_t forced_eos_token_id = -1;
  std::vector<int32_t> eos_token_ids;  // empty: the model's eos_id
  int32_t decoder_start_token_id = -1;  // the caller sets it (Python: the model's, or the option); validate refuses -1
  int32_t pad_token_id = -1;            // -1: the model's pad_id (fed to finished rows: must be in the vocabulary)
  bool return_scores = false;
  bool return_attention = false;
  // Streaming (greedy and sampling): called with (source index, token) as each token is
  // decided, the final EOS excepted.
  std::function<void(int64_t, int32_t)> on_token;
  // Cancellation: empty (none), one token for the whole call, or one per source. A cancelled
  // source is finished at the next step (its result has cancelled = true, tokens so far).
  std::vector<std::shared_ptr<const CancelToken>> cancel;

  // One more token over every source, or null: the engine's own (Engine::close cancels the
  // requests it runs through it); the searches only look when `cancel` is not empty, so the
  // engine sets it only then (otherwise it puts its token into `cancel`).
  std::shared_ptr<const CancelToken> cancel_all;
  // Whether source b's token (or the call's) is cancelled; null tokens never are.
  bool source_cancelled(int64_t b) const {
    if (cancel_all && cancel_all->cancelled()) return true;
    if (cancel.empty()) return false;
    const auto& token = cancel.size() == 1 ? cancel.front() : cancel[static_cast<size_t>(b)];
    return token && token->cancelled();
  }

  // Throws std::invalid_argument naming the first bad option.
  void validate(int64_t batch, int64_t tgt_vocab) const;
};

struct GenerationResult {
  std::vector<std::vector<int32_t>> tokens;     // n-best, best first; no start token, no final EOS
  std::vector<float> scores;                    // when return_scores
  std::vector<std::vector<float>> attention;    // when return_attention: (generated length, src_len) row-major
  int64_t src_len = 0;
  bool cancelled = false;  // stopped by its CancelToken: tokens (and scores) so far
};

}  // namespace tformer
