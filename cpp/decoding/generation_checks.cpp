// The checks of a generate call, shared by generate and the engine's submit.
#include "tformer/errors.h"
#include "tformer/model.h"

namespace tformer {

GenerationOptions Transformer::checked_generation_options(const TokenBatch& src,
                                                          const GenerationOptions& options,
                                                          bool check_weights) const {
  if (check_weights) check_complete();
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
  return opt;
}

}  // namespace tformer
