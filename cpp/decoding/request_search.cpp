// RequestSearch's shared state and factory, and the result helpers both searches use.
#include <algorithm>
#include <limits>

#include "search.h"
#include "tformer/errors.h"

namespace tformer::decoding {

RequestSearch::RequestSearch(SearchSetup setup)
    : setup_(std::move(setup)), processors_(setup_.options, setup_.vocab) {
  const GenerationOptions& opt = setup_.options;
  if (setup_.src_lengths.empty()) throw_value_error("a search needs at least one source");
  if (setup_.vocab < 1) throw_value_error("a search needs a vocabulary, got size ", setup_.vocab);
  batch_ = static_cast<int64_t>(setup_.src_lengths.size());
  beam_ = opt.beam_size;
  max_src_len_ = *std::max_element(setup_.src_lengths.begin(), setup_.src_lengths.end());
  feed_.assign(static_cast<size_t>(rows()), opt.decoder_start_token_id);
  parents_.resize(static_cast<size_t>(rows()));
  for (int64_t r = 0; r < rows(); ++r) parents_[static_cast<size_t>(r)] = static_cast<int32_t>(r);
}

std::unique_ptr<RequestSearch> RequestSearch::make(SearchSetup setup) {
  return setup.options.beam_size == 1 ? make_greedy_search(std::move(setup)) : make_beam_search(std::move(setup));
}

void add_pending_bias(float* row, const float* bias, int64_t vocab) {
  if (!bias) return;
#pragma omp simd
  for (int64_t v = 0; v < vocab; ++v) row[v] += bias[v];
}

bool all_sources_cancelled(const GenerationOptions& options, int64_t batch) {
  if (options.cancel.empty() && !options.cancel_all) return false;
  for (int64_t b = 0; b < batch; ++b)
    if (!options.source_cancelled(b)) return false;
  return true;
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
