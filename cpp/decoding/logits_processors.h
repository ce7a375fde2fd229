// The logits processors of transformers' generate, applied in its order to one row of
// scores (raw logits for greedy/sampling, log-probabilities for beam search):
// repetition penalty, no-repeat n-gram, bad words, min new tokens, forced first tokens
// (target_prefix / forced BOS), forced EOS; then, when sampling, temperature, top-k, top-p.
#pragma once

#include <cstdint>
#include <vector>

#include "tformer/decoding.h"

namespace tformer::decoding {

// What the processors need to know about one row.
struct RowContext {
  const int32_t* history = nullptr;  // tokens fed so far, decoder start token first
  int64_t history_len = 0;           // = generated + 1
  int64_t generated = 0;             // tokens generated before this step
  const std::vector<int32_t>* prefix = nullptr;  // forced first tokens of this row's source
};

class LogitsProcessors {
 public:
  LogitsProcessors(const GenerationOptions& options, int64_t vocab);

  void process(float* scores, const RowContext& row) const;
  // Temperature, top-k, top-p (sampling only). min_keep: tokens top-k/top-p always keep.
  void warp(float* scores, int64_t min_keep) const;
  // transformers' LogitNormalization, which runs after every other processor.
  void renormalize(float* scores) const;

  bool is_eos(int32_t token) const;
  const std::vector<int32_t>& eos() const { return eos_; }

 private:
  const GenerationOptions& opt_;
  int64_t vocab_;
  std::vector<int32_t> eos_;
  std::vector<int32_t> banned_single_;                 // one-token bad words
  std::vector<std::vector<int32_t>> banned_sequences_;  // longer bad words
};

}  // namespace tformer::decoding
