// The running set of decoding: requests (each a batch of sources with its own options and
// search) whose rows share every decoder step. Before a step, each request's search says
// whether it goes on (cancelled sources close); after it, each consumes its own rows' logits.
// K/V memory comes from a paged pool: a request's worst case is reserved when it joins, so a
// running request never waits for memory; joining and leaving copy nothing, and beams share
// their full prefix blocks (copy-on-write of the partial last one).
//
// generate() runs one request through a StepRunner of its own; the scheduler (engine.h) runs
// many. The decoder step is row-independent, so a request's result is the same either way.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "decoder_step.h"
#include "kv_pool.h"
#include "request_search.h"
#include "tformer/model.h"

namespace tformer::decoding {

struct RunnerLimits {
  int64_t max_rows = 256;       // rows per step
  int64_t kv_blocks = 0;        // blocks in the pool
  int64_t block_size = 16;      // positions per block
  int64_t max_positions = 256;  // decoder positions a row may reach (the longest max_length)
  int64_t max_src_len = 256;    // the longest source
  // generate's runner: a failure propagates as the exception it is (ValueError stays one)
  // instead of becoming the request's error message.
  bool rethrow = false;
};

class StepRunner {
 public:
  StepRunner(const Transformer& model, const RunnerLimits& limits);

  // Blocks a request holds at most: its sources' K/V plus every row's cache at max_length.
  static int64_t blocks_for(const std::vector<int32_t>& src_lengths, const GenerationOptions& options,
                            int64_t block_size);
  int64_t blocks_needed(const std::vector<int32_t>& src_lengths, const GenerationOptions& options) const {
    return blocks_for(src_lengths, options, limits_.block_size);
  }
  // Whether a request of `rows` rows needing `blocks` blocks can join now.
  bool fits(int64_t rows, int64_t blocks) const;
  // A request the runner could never take (more rows or blocks than it has at all): the reason, or "".
  std::string never_fits(int64_t rows, int64_t blocks, int64_t src_len, int64_t max_length) const;

  // Encodes the request's sources (as one batch, as generate alone would), writes their
  // cross-attention K/V and joins the running set. `options` are validated (pad id resolved).
  // The caller checked fits(). Requests all of whose sources were cancelled before they
  // started finish at once, without encoding.
  void admit(uint64_t id, const TokenBatch& src, GenerationOptions options);

  // One decoder step over the rows of every running request (nothing to do when none), or,
  // with max_request_rows >= 0, of the requests of at most that many rows only (the others
  // wait for a later step, their state untouched).
  void step(int64_t max_request_rows = -1);
  // Whether a running request has at most `rows` rows.
  bool runs_request_of_at_most(int64_t rows) const;

  struct Finished {
    uint64_t id = 0;
    std::vector<GenerationResult> results;
    std::string error;  // not empty: the request failed (results empty)
  };
  // Requests that finished since the last call (moved out).
  std::vector<Finished> take_finished();

  int64_t running_requests() const { return static_cast<int64_t>(running_.size()); }
  int64_t running_rows() const { return running_rows_; }
  int64_t reserved_blocks() const { return reserved_blocks_; }
  const KvPool& pool() const { return pool_; }
  int64_t max_rows() const { return limits_.max_rows; }
  int64_t rows_last_step() const { return rows_last_step_; }

 private:
  struct Request {
    uint64_t id = 0;
    std::unique_ptr<RequestSearch> search;
    std::vector<std::vector<int32_t>> row_blocks;    // per row: its self-attention blocks
    std::vector<std::vector<int32_t>> src_blocks;    // per source: its cross-attention blocks
    std::vector<int32_t> src_lengths;
    int64_t reserved = 0;                            // blocks reserved for it
  };
  void finish(Request& r, std::string error = "");
  void release_blocks(Request& r);
  void reorder(Request& r);  // after a reordering advance: row r continues row parents[r]

  const Transformer& model_;
  RunnerLimits limits_;
  KvPool pool_;
  DecoderStep decoder_;
  std::vector<std::unique_ptr<Request>> running_;
  std::vector<Finished> finished_;
  std::vector<DecoderStep::Row> rows_;                 // max_rows, reused every step
  std::vector<std::vector<int32_t>> reorder_scratch_;  // per row of the request being reordered
  int64_t running_rows_ = 0, reserved_blocks_ = 0, rows_last_step_ = 0;
};

}  // namespace tformer::decoding
