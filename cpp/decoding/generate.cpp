// Transformer::generate: checks the options, then runs the request through a StepRunner of
// its own (the engine's step code: paged K/V, the request's RequestSearch).
#include <algorithm>
#include <cmath>

#include "search.h"
#include "step_runner.h"
#include "tformer/errors.h"
#include "tformer/model.h"

namespace tformer {
namespace {

// Positions per K/V block of generate's own pool (the engine's default).
constexpr int64_t kGenerateBlockSize = 16;


}  // namespace

void GenerationOptions::validate(int64_t batch, int64_t tgt_vocab) const {
  auto in_vocab = [tgt_vocab](int64_t id) { return id >= 0 && id < tgt_vocab; };
  if (beam_size < 1 || beam_size > kMaxBeamSize)
    throw_value_error("beam_size must be between 1 and ", kMaxBeamSize, ", got ", beam_size);
  if (num_hypotheses < 1 || num_hypotheses > beam_size)
    throw_value_error("num_hypotheses must be between 1 and beam_size (", beam_size, "), got ", num_hypotheses);
  if (max_length < 1) throw_value_error("max_length must be >= 1, got ", max_length);
  if (min_length < 0 || min_length > max_length)
    throw_value_error("min_length must be between 0 and max_length (", max_length, "), got ", min_length);
  if (!std::isfinite(length_penalty)) throw_value_error("length_penalty must be a finite number, got ", length_penalty);
  if (sampling_topk < 0) throw_value_error("sampling_topk must be >= 0 (0: no cut), got ", sampling_topk);
  if (!(sampling_topp > 0.0f && sampling_topp <= 1.0f))
    throw_value_error("sampling_topp must be in (0, 1] (1: no cut), got ", sampling_topp);
  if (!(sampling_temperature > 0.0f) || std::isinf(sampling_temperature))
    throw_value_error("sampling_temperature must be a finite number > 0, got ", sampling_temperature);
  if (!(repetition_penalty > 0.0f) || std::isinf(repetition_penalty))
    throw_value_error("repetition_penalty must be a finite number > 0, got ", repetition_penalty);
  if (no_repeat_ngram_size < 0) throw_value_error("no_repeat_ngram_size must be >= 0, got ", no_repeat_ngram_size);
  if (!target_prefix.empty()) {
    if (static_cast<int64_t>(target_prefix.size()) != batch)
      throw_value_error("target_prefix has ", target_prefix.size(), " entries for ", batch, " sources");
    for (size_t i = 0; i < target_prefix.size(); ++i) {
      if (static_cast<int64_t>(target_prefix[i].size()) > max_length)
        throw_value_error("target_prefix ", i, " has ", target_prefix[i].size(), " tokens, more than max_length ",
                          max_length);
      for (int32_t t : target_prefix[i])
        if (!in_vocab(t))
          throw_value_error("target_prefix ", i, ": token id ", t, " is outside the target vocabulary [0, ", tgt_vocab, ")");
    }
  }
  if (!sample_ids.empty() && static_cast<int64_t>(sample_ids.size()) != batch)
    throw_value_error("sample_ids has ", sample_ids.size(), " entries for ", batch, " sources");
  for (const auto& seq : bad_words_ids)
    for (int32_t t : seq)
      if (!in_vocab(t)) throw_value_error("bad_words_ids: token id ", t, " is outside the target vocabulary [0, ", tgt_vocab, ")");
  // -1: none.
  if (forced_bos_token_id != -1 && !in_vocab(forced_bos_token_id))
    throw_value_error("forced_bos_token_id ", forced_bos_token_id, " is outside the target vocabulary [0, ", tgt_vocab,
                      ") (-1: none)");
  if (forced_eos_token_id != -1 && !in_vocab(forced_eos_token_id))
    throw_value_error("forced_eos_token_id ", forced_eos_token_id, " is outside the target vocabulary [0, ", tgt_vocab,
                      ") (-1: none)");
  if (eos_token_ids.empty()) throw_value_error("eos_token_id: at least one end-of-sentence id is needed");
  for (int32_t e : eos_token_ids)
    if (!in_vocab(e)) throw_value_error("eos_token_id ", e, " is outside the target vocabulary [0, ", tgt_vocab, ")");
  if (cancel.size() > 1 && static_cast<int64_t>(cancel.size()) != batch)
    throw_value_error("cancel has ", cancel.size(), " tokens for ", batch, " sources: give one token or one per source");
  if (!in_vocab(decoder_start_token_id))
    throw_value_error("decoder_start_token_id ", decoder_start_token_id, " is outside the target vocabulary [0, ",
                      tgt_vocab, ")");
  // Finished rows are fed the pad id: outside the table, the embedding would read out of bounds.
  if (!in_vocab(pad_token_id))
    throw_value_error("pad_token_id ", pad_token_id, " is outside the target vocabulary [0, ", tgt_vocab,
                      ") (-1: the model's pad_id)");
}

std::vector<GenerationResult> Transformer::generate_holding_lock(const TokenBatch& src,
                                                               const GenerationOptions& options) const {
  GenerationOptions opt = checked_generation_options(src, options);
  const int64_t batch = src.ids.ndim() == 2 ? src.ids.dim(0) : 0;
  // Sources cancelled before the encoder ran (a request cancelled while queued): when all
  // are, nothing is encoded or decoded.
  if (decoding::all_sources_cancelled(opt, batch)) return decoding::cancelled_results(src, opt, batch);
  upload(src, config_.src_vocab_size, "src_ids");  // the ids' checks, before anything is sized by them

  // One request through a StepRunner of its own, sized for it: the engine's step code, so a
  // request gets the same result here as sharing the engine's steps with others.
  decoding::RunnerLimits limits;
  limits.max_rows = batch * opt.beam_size;
  limits.block_size = kGenerateBlockSize;
  limits.kv_blocks = decoding::StepRunner::blocks_for(src.lengths, opt, limits.block_size);
  limits.max_positions = opt.max_length;
  limits.max_src_len = src.ids.dim(1);
  limits.rethrow = true;
  decoding::StepRunner runner(*this, limits);
  runner.admit(0, src, std::move(opt));
  while (runner.running_requests() > 0) runner.step();
  std::vector<decoding::StepRunner::Finished> finished = runner.take_finished();
  if (finished.size() != 1 || !finished.front().error.empty())
    throw_runtime_error("generate: ", finished.empty() ? std::string("no result") : finished.front().error);
  return std::move(finished.front().results);
}

}  // namespace tformer
