// One request's search as a state machine: the rows it owns (batch * beam), the token each
// row feeds next, and what each step's logits do to its hypotheses. Whoever runs the decoder
// (generate's loop for one request, the step scheduler for many at once) calls, per step:
//
//   if (!search.before_step()) -> done (cancelled sources closed; nothing left to decode)
//   decoder step on search.feed() at position search.step() for each of its rows
//   bool more = search.advance(logits_of_its_rows, ...);
//   if (more && search.reordered()) -> row r continues row parents()[r]: move its KV state
//   if (!more) -> results()
//
// The search never sees other requests' rows: its tokens and scores depend on its own
// logits only, which is what makes a request's result the same alone or sharing steps.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "logits_processors.h"
#include "tformer/decoding.h"

namespace tformer::decoding {

struct SearchSetup {
  GenerationOptions options;             // validated (pad_token_id resolved); the search keeps its own copy
  std::vector<int64_t> src_lengths;      // per source (batch = src_lengths.size())
  int64_t vocab = 0;
};

class RequestSearch {
 public:
  virtual ~RequestSearch() = default;

  // Greedy/sampling (beam_size 1) or beam search, per setup.options.
  static std::unique_ptr<RequestSearch> make(SearchSetup setup);

  int64_t batch() const { return batch_; }
  int64_t beam() const { return beam_; }
  int64_t rows() const { return batch_ * beam_; }  // fixed for the request's life
  // Decoder steps consumed so far = the decoder position of the next step's tokens.
  int64_t step() const { return step_; }
  // The token each row feeds at the next step (rows entries).
  const int32_t* feed() const { return feed_.data(); }
  const GenerationOptions& options() const { return setup_.options; }
  int64_t max_src_len() const { return max_src_len_; }

  // Before each step: closes sources whose cancel token fired (beam search streams the
  // rest of such a source's best hypothesis to on_token here). False: nothing left to
  // decode (every source finished or cancelled); call results().
  virtual bool before_step() = 0;
  // Consumes this step's logits (rows x vocab, host, float32; overwritten freely). When
  // pending_bias is not null, each row the search reads needs it added first (the decoder
  // left the output bias out: DecoderStep::pending_bias). attention: the step's
  // cross-attention alignments of row r at attention + r * attention_stride (max_src_len()
  // valid entries), or null when return_attention is off. Calls options().on_token for
  // newly decided tokens. Returns false when the request is done (results() is ready).
  virtual bool advance(float* logits, const float* pending_bias, const float* attention,
                       int64_t attention_stride) = 0;
  // After an advance that returned true: row r continues the hypothesis of row parents()[r]
  // (a row of this request); reordered() is false when parents() is the identity.
  const std::vector<int32_t>& parents() const { return parents_; }
  bool reordered() const { return reordered_; }
  // One result per source, in source order. Once, after the request is done.
  virtual std::vector<GenerationResult> results() = 0;

 protected:
  explicit RequestSearch(SearchSetup setup);

  SearchSetup setup_;
  LogitsProcessors processors_;  // reads setup_.options (a member: stable address)
  int64_t batch_ = 0, beam_ = 1, step_ = 0, max_src_len_ = 0;
  std::vector<int32_t> feed_;
  std::vector<int32_t> parents_;
  bool reordered_ = false;
};

}  // namespace tformer::decoding
