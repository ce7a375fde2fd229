#include "step_runner.h"

#include <algorithm>
#include <exception>

#include "search.h"
#include "tformer/errors.h"

namespace tformer::decoding {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

StepRunner::StepRunner(const Transformer& model, const RunnerLimits& limits)
    : model_(model),
      limits_(limits),
      pool_(model.config(), model.compute_dtype(), model.device(), limits.kv_blocks, limits.block_size),
      decoder_(model, pool_, limits.max_rows, limits.max_positions, limits.max_src_len, true),
      rows_(static_cast<size_t>(limits.max_rows)) {}

int64_t StepRunner::blocks_for(const std::vector<int32_t>& src_lengths, const GenerationOptions& options,
                               int64_t bs) {
  int64_t blocks = 0;
  for (int32_t len : src_lengths) blocks += ceil_div(len, bs);
  const int64_t rows = static_cast<int64_t>(src_lengths.size()) * options.beam_size;
  return blocks + rows * ceil_div(options.max_length, bs);
}

bool StepRunner::fits(int64_t rows, int64_t blocks) const {
  return running_rows_ + rows <= limits_.max_rows && reserved_blocks_ + blocks <= pool_.num_blocks();
}

std::string StepRunner::never_fits(int64_t rows, int64_t blocks, int64_t src_len, int64_t max_length) const {
  std::string why;
  if (rows > limits_.max_rows)
    why = "it needs " + std::to_string(rows) + " decoder rows (sources x beam_size), more than max_rows " +
          std::to_string(limits_.max_rows);
  else if (blocks > pool_.num_blocks())
    why = "its KV cache needs " + std::to_string(blocks) + " blocks of " + std::to_string(limits_.block_size) +
          " positions at most, more than the pool's " + std::to_string(pool_.num_blocks()) +
          " (raise the KV cache budget, or lower max_length / beam_size / the number of sources)";
  else if (src_len > limits_.max_src_len)
    why = "a source has " + std::to_string(src_len) + " tokens, more than the engine's longest " +
          std::to_string(limits_.max_src_len);
  else if (max_length > limits_.max_positions)
    why = "max_length " + std::to_string(max_length) + " is more than the engine's " +
          std::to_string(limits_.max_positions);
  return why;
}

void StepRunner::admit(uint64_t id, const TokenBatch& src, GenerationOptions options) {
  const int64_t batch = static_cast<int64_t>(src.lengths.size());
  if (decoding::all_sources_cancelled(options, batch)) {  // cancelled while queued: nothing to encode
    finished_.push_back({id, cancelled_results(src, options, batch), ""});
    return;
  }
  auto req = std::make_unique<Request>();
  req->id = id;
  req->src_lengths = src.lengths;
  req->reserved = blocks_needed(src.lengths, options);
  const int64_t bs = limits_.block_size;
  const int64_t beam = options.beam_size, max_length = options.max_length;
  SearchSetup setup;
  setup.src_lengths.assign(src.lengths.begin(), src.lengths.end());
  setup.vocab = model_.config().tgt_vocab_size;
  setup.options = std::move(options);
  req->search = RequestSearch::make(std::move(setup));
  const Transformer::DeviceBatch dev_src = model_.upload(src, model_.config().src_vocab_size, "src_ids");
  const Tensor memory = model_.encode_device(dev_src);
  reserved_blocks_ += req->reserved;  // from here on, finish() gives everything back
  try {
    for (int32_t len : src.lengths) {
      std::vector<int32_t> blocks;
      for (int64_t j = 0; j < ceil_div(len, bs); ++j) blocks.push_back(pool_.allocate());
      req->src_blocks.push_back(std::move(blocks));
    }
    decoder_.write_cross_kv(memory, src.lengths, req->src_blocks);
  } catch (...) {
    release_blocks(*req);
    reserved_blocks_ -= req->reserved;
    throw;
  }
  req->row_blocks.resize(static_cast<size_t>(batch * beam));
  for (auto& blocks : req->row_blocks) blocks.reserve(static_cast<size_t>(ceil_div(max_length, bs)));
  running_rows_ += batch * beam;
  running_.push_back(std::move(req));
}

void StepRunner::release_blocks(Request& r) {
  for (auto& blocks : r.row_blocks) {
    for (int32_t b : blocks) pool_.release(b);
    blocks.clear();
  }
  for (auto& blocks : r.src_blocks) {
    for (int32_t b : blocks) pool_.release(b);
    blocks.clear();
  }
}

void StepRunner::finish(Request& r, std::string error) {
  Finished f;
  f.id = r.id;
  if (error.empty()) {
    try {
      f.results = r.search->results();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  f.error = std::move(error);
  release_blocks(r);
  reserved_blocks_ -= r.reserved;
  running_rows_ -= r.search->rows();
  finished_.push_back(std::move(f));
  r.search.reset();  // marks it for removal
}

void StepRunner::reorder(Request& r) {
  const std::vector<int32_t>& parents = r.search->parents();
  const size_t rows = r.row_blocks.size();
  if (reorder_scratch_.size() < rows) reorder_scratch_.resize(rows);
  // Each row takes its parent's blocks (shared: refcounts), then drops its own.
  for (size_t i = 0; i < rows; ++i) {
    const std::vector<int32_t>& from = r.row_blocks[static_cast<size_t>(parents[i])];
    reorder_scratch_[i].assign(from.begin(), from.end());
    for (int32_t b : from) pool_.retain(b);
  }
  for (size_t i = 0; i < rows; ++i) {
    for (int32_t b : r.row_blocks[i]) pool_.release(b);
    r.row_blocks[i].swap(reorder_scratch_[i]);
  }
  // The next position goes into the last block unless it is full: that block must be the
  // row's own (copy-on-write); full blocks stay shared, they are never written again.
  if (r.search->step() % limits_.block_size == 0) return;
  for (size_t i = 0; i < rows; ++i) {
    int32_t& last = r.row_blocks[i].back();
    if (pool_.refs(last) == 1) continue;
    const int32_t own = pool_.allocate();
    pool_.copy_block(own, last);
    pool_.release(last);
    last = own;
  }
}

bool StepRunner::runs_request_of_at_most(int64_t rows) const {
  for (const auto& r : running_)
    if (r->search && r->search->rows() <= rows) return true;
  return false;
}

void StepRunner::step(int64_t max_request_rows) {
  rows_last_step_ = 0;
  auto included = [max_request_rows](const Request& r) {
    return max_request_rows < 0 || r.search->rows() <= max_request_rows;
  };
  // Requests whose sources are all finished or cancelled leave before the step.
  for (auto& r : running_)
    if (included(*r) && !r->search->before_step()) finish(*r);
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return !r->search; }),
                 running_.end());
  if (running_.empty()) return;

  const int64_t bs = limits_.block_size;
  int64_t n = 0;
  bool attention = false;
  for (auto& r : running_) {
    if (!included(*r)) continue;
    RequestSearch& s = *r->search;
    const int64_t step = s.step(), beam = s.beam();
    attention = attention || s.options().return_attention;
    for (int64_t i = 0; i < s.rows(); ++i) {
      std::vector<int32_t>& blocks = r->row_blocks[static_cast<size_t>(i)];
      if (static_cast<int64_t>(blocks.size()) <= step / bs) blocks.push_back(pool_.allocate());
      DecoderStep::Row& row = rows_[static_cast<size_t>(n++)];
      row.token = s.feed()[i];
      row.step = step;
      row.self_blocks = &blocks;
      row.cross_blocks = &r->src_blocks[static_cast<size_t>(i / beam)];
      row.cross_len = r->src_lengths[static_cast<size_t>(i / beam)];
    }
  }
  rows_last_step_ = n;
  if (n == 0) return;
  float* logits = nullptr;
  try {
    logits = decoder_.run(rows_.data(), n, attention);
  } catch (const std::exception& e) {  // nothing of this step can be trusted: its requests fail
    if (limits_.rethrow) throw;
    for (auto& r : running_)
      if (included(*r)) finish(*r, std::string("decode step failed: ") + e.what());
    running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return !r->search; }),
                   running_.end());
    return;
  }
  const int64_t V = decoder_.vocab(), stride = decoder_.attention_stride();
  const float* att = attention ? decoder_.attention() : nullptr;
  int64_t offset = 0;
  for (auto& r : running_) {
    if (!included(*r)) continue;
    RequestSearch& s = *r->search;
    const int64_t rows = s.rows();
    try {
      const float* own_att = s.options().return_attention ? att + offset * stride : nullptr;
      const bool more = s.advance(logits + offset * V, decoder_.pending_bias(), own_att, stride);
      if (!more) finish(*r);
      else if (s.reordered()) reorder(*r);
    } catch (const std::exception& e) {
      if (limits_.rethrow) throw;
      finish(*r, e.what());
    }
    offset += rows;
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& r) { return !r->search; }),
                 running_.end());
}

std::vector<StepRunner::Finished> StepRunner::take_finished() {
  std::vector<Finished> out;
  out.swap(finished_);
  return out;
}

}  // namespace tformer::decoding
