// The two RequestSearch implementations (built by RequestSearch::make) and the pieces of a
// result both share.
#pragma once

#include <memory>
#include <vector>

#include "logits_processors.h"
#include "request_search.h"
#include "tformer/decoding.h"
#include "tformer/model.h"

namespace tformer::decoding {

// Greedy (argmax) or plain sampling, one row per source (transformers' _sample).
std::unique_ptr<RequestSearch> make_greedy_search(SearchSetup setup);

// Beam search (and beam sampling), beam_size rows per source (transformers' _beam_search).
std::unique_ptr<RequestSearch> make_beam_search(SearchSetup setup);

// Adds the output bias the decoder left out (advance's pending_bias) to one logits row, as
// bias_act does: x + bias, in float. Nothing when bias is null.
void add_pending_bias(float* row, const float* bias, int64_t vocab);

// Whether every one of the batch's sources is cancelled (before the encoder runs: a request
// cancelled while queued is then answered without decoding).
bool all_sources_cancelled(const GenerationOptions& options, int64_t batch);

// The results of sources cancelled before anything was decoded: num_hypotheses empty
// hypotheses each (scores -inf when return_scores), cancelled = true.
std::vector<GenerationResult> cancelled_results(const TokenBatch& src, const GenerationOptions& options,
                                                int64_t batch);

// Strips the final EOS of a hypothesis (the start token is never stored).
void strip_final_eos(std::vector<int32_t>& tokens, const LogitsProcessors& processors);

}  // namespace tformer::decoding
