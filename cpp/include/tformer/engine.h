// The step scheduler ("in-flight batching"): one thread decodes the rows of every running
// request together, one decoder step at a time; before each step finished requests leave and
// waiting ones join (their encoder runs, their K/V get blocks of the paged pool). A request
// is a batch of sources with generate's options, and its result equals generate's for it
// alone, bit for bit, whatever shares its steps (docs/SERVING.md "The engine"). The engine
// holds the model's weights lock (shared) while requests run; a weight update that waits for
// it drains the engine: see EngineOptions::update_wait_steps.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tformer/decoding.h"
#include "tformer/model.h"

namespace tformer {

// The most rows a step may have: up to here every op of a decode step is row-independent on
// the CPU (the fp32 GEMM's gemm_rows range), which the engine's exactness rests on.
constexpr int64_t kEngineMaxRows = 256;

struct EngineOptions {
  int64_t max_rows = 256;           // decoder rows per step (sources x beam of the running requests), <= kEngineMaxRows
  int64_t max_batch_tokens = 8192;  // source tokens (padded) encoded before one step; >= 1 request always
  int64_t kv_cache_bytes = 0;       // the K/V pool; 0: a default (kDefaultKvCacheBytes)
  int64_t block_size = 16;          // positions per K/V block
  // Priority of small requests (at most small_request_rows rows, e.g. one greedy sentence):
  // while one runs, larger requests join only every large_request_every-th step (the steps
  // between carry only small requests' rows, and cost far less on a CPU); larger newcomers are
  // admitted (their encoder run) only at those large steps too. 1: every step carries every
  // row. A request's result is the same either way (rows are independent).
  int64_t large_request_every = 1;
  int64_t small_request_rows = 4;
  // A weight update (set_parameters, a training step's update of this model) waits for the
  // engine: from then on nothing new is admitted, and the running requests go on with the
  // old weights until they finish, then the update gets in and the queue resumes with the new
  // weights, so every request decodes with one set of weights. A request still running
  // update_wait_steps steps after the update began waiting is stopped and fails ("submit it
  // again"), so that a very long request delays an update by this many steps at most.
  // 0: no bound (the update waits for the longest running request, at most its max_length).
  int64_t update_wait_steps = 1024;
};

struct EngineStats {
  int64_t steps = 0, rows_last_step = 0, rows_total = 0;
  int64_t queue_length = 0, running_requests = 0, running_rows = 0;
  int64_t max_rows = 0, kv_block_size = 0, kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_reserved = 0;
  int64_t kv_bytes_total = 0, kv_bytes_used = 0;
  int64_t submitted = 0, completed = 0, failed = 0, encoder_tokens = 0;
};

class Engine {
 public:
  static constexpr int64_t kDefaultKvCacheBytes = int64_t{1} << 30;

  // The model must outlive the engine (the bindings keep it alive).
  Engine(const Transformer& model, const EngineOptions& options);
  ~Engine();  // close()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Called once per request on the engine thread: its results (one per source), or an error
  // message (results empty) when the request failed inside the engine.
  using Done = std::function<void(std::vector<GenerationResult>&& results, const std::string& error)>;

  // Checks the request as generate would (std::invalid_argument / ValueError naming the
  // problem, on the calling thread), queues it and returns its id. Cancel through the
  // options' CancelTokens (queued: dropped before its encoder runs; running: its sources close
  // at the next step). options.on_token streams (on the engine thread).
  uint64_t submit(const TokenBatch& src, const GenerationOptions& options, Done done);

  EngineStats stats() const;
  // Stops taking requests, cancels the queued and running ones (their Done still runs, with
  // cancelled results) and joins the engine thread. Idempotent.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tformer
