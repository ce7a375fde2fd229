// The search loops over a DecodeSession. Both fill one GenerationResult per source.
#pragma once

#include <vector>

#include "decode_session.h"
#include "logits_processors.h"
#include "tformer/decoding.h"

namespace tformer::decoding {

struct SearchInputs {
  DecodeSession& session;
  const GenerationOptions& options;
  const LogitsProcessors& processors;
  int64_t batch = 0;
  int32_t start_token = 0;
  int32_t pad_token = 0;
};

// Greedy (argmax) or plain sampling, one row per source (transformers' _sample).
std::vector<GenerationResult> greedy_search(const SearchInputs& in);

// Beam search (and beam sampling), beam_size rows per source (transformers' _beam_search).
std::vector<GenerationResult> beam_search(const SearchInputs& in);

// The results of sources cancelled before anything was decoded: num_hypotheses empty
// hypotheses each (scores -inf when return_scores), cancelled = true.
std::vector<GenerationResult> cancelled_results(const TokenBatch& src, const GenerationOptions& options,
                                                int64_t batch);

// Strips the final EOS of a hypothesis (the start token is never stored).
void strip_final_eos(std::vector<int32_t>& tokens, const LogitsProcessors& processors);

}  // namespace tformer::decoding
