// Transformer::generate: checks the options, builds a DecodeSession and the request's
// search, and runs the step loop of request_search.h over them.
#include <algorithm>
#include <cmath>

#include "decode_session.h"
#include "search.h"
#include "tformer/errors.h"
#include "tformer/model.h"

namespace tformer {
namespace {

bool all_cancelled_before_start(const GenerationOptions& opt, int64_t batch) {
  if (opt.cancel.empty()) return false;
  for (int64_t b = 0; b < batch; ++b)
    if (!opt.source_cancelled(b)) return false;
  return true;
}

// The output bias DecodeSession::step leaves out for the search to add (DecodeSession's
// own rule: float32 logits computed in host memory, a float head with final_logits_bias),
// or null. Goes when DecodeSession does.
const float* session_pending_bias(const Transformer& model) {
  const Linear& head = model.weights().lm_head;
  const bool host_f32 = model.device().is_cpu() && model.compute_dtype() == DType::f32;
  return model.config().final_logits_bias && host_f32 && !head.int8() ? head.bias.data<float>() : nullptr;
}

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
  check_complete();
  GenerationOptions opt = options;
  if (opt.pad_token_id == -1) {  // the model's; validate checks it like a given one
    if (config_.pad_id < 0 || config_.pad_id >= config_.tgt_vocab_size)
      throw_value_error("pad_token_id: the model's pad_id ", config_.pad_id, " is outside the target vocabulary [0, ",
                        config_.tgt_vocab_size, "): pass a pad_token_id inside it");
    opt.pad_token_id = config_.pad_id;
  }
  const int64_t batch = src.ids.ndim() == 2 ? src.ids.dim(0) : 0;
  opt.validate(batch, config_.tgt_vocab_size);
  // The last token fed to the decoder sits at position max_length - 1.
  const int64_t first = config_.position_ids == PositionIds::arange ? config_.position_offset
                                                                            : int64_t{config_.pad_id} + 1;
  if (opt.max_length > config_.max_positions - first)  // not first + max_length: that can overflow
    throw_value_error("max_length ", opt.max_length, " is beyond the target positions table: at most ",
                      config_.max_positions - first, " tokens");

  // Sources cancelled before the encoder ran (a request cancelled while queued): when all
  // are, nothing is encoded or decoded.
  if (all_cancelled_before_start(opt, batch)) return decoding::cancelled_results(src, opt, batch);

  DecodeSession session(*this, src, opt.beam_size, opt.max_length, opt.return_attention);
  decoding::SearchSetup setup;
  setup.src_lengths.assign(src.lengths.begin(), src.lengths.end());
  setup.vocab = config_.tgt_vocab_size;
  setup.options = std::move(opt);
  const std::unique_ptr<decoding::RequestSearch> search = decoding::RequestSearch::make(std::move(setup));
  const float* pending_bias = session_pending_bias(*this);
  const bool want_attention = search->options().return_attention;
  while (search->before_step()) {
    const int64_t step = search->step();
    float* logits = session.step(search->feed(), step);
    const float* attention = want_attention ? session.attention() : nullptr;
    if (!search->advance(logits, pending_bias, attention, session.max_src_len())) break;
    if (search->reordered()) session.reorder(search->parents(), step);
  }
  return search->results();
}

}  // namespace tformer
