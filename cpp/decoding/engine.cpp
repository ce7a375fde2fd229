// Engine: a queue, one scheduler thread and a StepRunner. The thread loops: admit what fits
// (FIFO; a request that does not fit yet lets later, smaller ones pass for a bounded number of
// steps, then holds the door until it fits), run one step over every running row, hand the
// finished requests their results. The weights lock is held (shared) while anything runs;
// when a writer waits for it, nothing new is admitted and the lock goes once the running
// requests have finished, so that each request decodes with one set of weights (engine.h).
#include "tformer/engine.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "../ops/cpu_kernels.h"
#include "search.h"
#include "step_runner.h"
#include "tformer/errors.h"

namespace tformer {
namespace {

static_assert(kEngineMaxRows <= cpu::kRowsGemmMaxRows, "engine steps must stay within the row-invariant GEMM");

// Steps a request that does not fit may be passed by later ones before it holds the door.
constexpr int64_t kMaxBypassedSteps = 32;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

struct Engine::Impl {
  const Transformer& model;
  EngineOptions options;
  std::unique_ptr<decoding::StepRunner> runner;
  int64_t max_positions = 0, max_src_len = 0;

  struct Pending {
    uint64_t id = 0;
    TokenBatch src;
    GenerationOptions options;
    Done done;
    std::shared_ptr<CancelToken> engine_cancel;
    int64_t rows = 0, blocks = 0, tokens = 0, bypassed = 0;
  };
  struct Running {
    Done done;
    std::shared_ptr<CancelToken> engine_cancel;
    bool interrupted = false;  // stopped so that a waiting weight update gets in
  };

  mutable std::mutex mu;
  std::condition_variable wake;
  std::deque<Pending> queue;                          // under mu
  std::vector<std::pair<uint64_t, Running>> running;  // engine thread only
  bool closing = false;                               // under mu
  int64_t step_count = 0;                             // engine thread only
  int64_t update_waited_steps = 0;                    // engine thread only
  std::atomic<bool> model_complete{false};            // every parameter set: stays so
  uint64_t next_id = 1;                               // under mu
  EngineStats stats;                                  // under mu
  std::thread thread;

  Impl(const Transformer& m, const EngineOptions& o) : model(m), options(o) {}
  void loop();
  void admit(std::vector<Pending>& admitted);
  void deliver(std::vector<decoding::StepRunner::Finished>& finished);
  void publish_running();  // the running set's figures into stats
  void note_update_waiting(bool waiting);
};

void Engine::Impl::publish_running() {
  std::lock_guard<std::mutex> lock(mu);
  stats.running_requests = runner->running_requests();
  stats.running_rows = runner->running_rows();
  stats.kv_blocks_used = runner->pool().used_blocks();
  stats.kv_blocks_reserved = runner->reserved_blocks();
  stats.kv_bytes_used = stats.kv_blocks_total ? stats.kv_bytes_total / stats.kv_blocks_total * stats.kv_blocks_used : 0;
}

Engine::Engine(const Transformer& model, const EngineOptions& options) : impl_(std::make_unique<Impl>(model, options)) {
  const TransformerConfig& cfg = model.config();
  if (options.max_rows < 1 || options.max_rows > kEngineMaxRows)
    throw_value_error("max_rows must be between 1 and ", kEngineMaxRows,
                      " (the rows for which a step's results do not depend on the other rows), got ", options.max_rows);
  if (options.max_batch_tokens < 1) throw_value_error("max_batch_tokens must be >= 1, got ", options.max_batch_tokens);
  if (options.block_size < 1 || options.block_size > 1024)
    throw_value_error("block_size must be between 1 and 1024, got ", options.block_size);
  if (options.large_request_every < 1)
    throw_value_error("large_request_every must be >= 1 (1: every step carries every row), got ",
                      options.large_request_every);
  if (options.small_request_rows < 1)
    throw_value_error("small_request_rows must be >= 1, got ", options.small_request_rows);
  if (options.update_wait_steps < 0)
    throw_value_error("update_wait_steps must be >= 0 (0: a weight update waits for every running request), got ",
                      options.update_wait_steps);
  if (options.kv_cache_bytes < 0) throw_value_error("kv_cache_bytes must be >= 0 (0: the default), got ", options.kv_cache_bytes);
  const int64_t bytes = options.kv_cache_bytes ? options.kv_cache_bytes : kDefaultKvCacheBytes;
  const int64_t block_bytes = decoding::KvPool::block_bytes(cfg, model.compute_dtype(), options.block_size);
  int64_t blocks = bytes / block_bytes;
  if (blocks < 1)
    throw_value_error("kv_cache_bytes ", bytes, " holds no K/V block: one block of ", options.block_size,
                      " positions takes ", block_bytes, " bytes for this model");
  // Decoder positions: what the positions table allows (generate's max_length limit).
  const int64_t first = cfg.position_ids == PositionIds::arange ? cfg.position_offset : int64_t{cfg.pad_id} + 1;
  impl_->max_positions = std::max<int64_t>(1, cfg.max_positions - first);
  impl_->max_src_len = cfg.max_positions;
  // The default budget never exceeds what max_rows rows at their longest can hold.
  if (!options.kv_cache_bytes)
    blocks = std::min(blocks, options.max_rows * (ceil_div(impl_->max_positions, options.block_size) +
                                                  ceil_div(impl_->max_src_len, options.block_size)));
  decoding::RunnerLimits limits;
  limits.max_rows = options.max_rows;
  limits.kv_blocks = std::min<int64_t>(blocks, INT32_MAX);
  limits.block_size = options.block_size;
  limits.max_positions = impl_->max_positions;
  limits.max_src_len = impl_->max_src_len;
  impl_->model_complete = model.missing_parameters().empty();
  impl_->runner = std::make_unique<decoding::StepRunner>(model, limits);
  impl_->stats.max_rows = options.max_rows;
  impl_->stats.kv_block_size = options.block_size;
  impl_->stats.kv_blocks_total = limits.kv_blocks;
  impl_->stats.kv_bytes_total = limits.kv_blocks * block_bytes;
  impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
}

Engine::~Engine() { close(); }

uint64_t Engine::submit(const TokenBatch& src, const GenerationOptions& options, Done done) {
  Impl& s = *impl_;
  Impl::Pending p;
  // Once complete, a model stays complete: later submits skip that check, which takes the
  // weights lock. (A submit waiting for it behind a weight update, with the GIL held, would
  // stall the engine's callbacks, and so the drain the update waits for.)
  const bool check_weights = !s.model_complete.load();
  p.options = s.model.checked_generation_options(src, options, check_weights);
  if (check_weights) s.model_complete = true;
  s.model.upload(src, s.model.config().src_vocab_size, "src_ids");  // the ids' checks, here
  p.src = src;
  const int64_t batch = src.ids.dim(0), beam = p.options.beam_size;
  p.rows = batch * beam;
  p.blocks = s.runner->blocks_needed(src.lengths, p.options);
  p.tokens = batch * src.ids.dim(1);
  const std::string why = s.runner->never_fits(p.rows, p.blocks, src.ids.dim(1), p.options.max_length);
  if (!why.empty()) throw_value_error("this engine cannot take the request: ", why);
  // The engine's own token, so that close() can stop the request (see cancel_all).
  p.engine_cancel = std::make_shared<CancelToken>();
  if (p.options.cancel.empty()) p.options.cancel = {p.engine_cancel};
  else p.options.cancel_all = p.engine_cancel;
  p.done = std::move(done);
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.closing) throw_runtime_error("engine is closed");
  p.id = s.next_id++;
  const uint64_t id = p.id;
  s.queue.push_back(std::move(p));
  ++s.stats.submitted;
  s.wake.notify_one();
  return id;
}

// Counts the steps a waiting weight update has waited; at update_wait_steps the running
// requests are stopped (their sources close at the next step, deliver fails them).
void Engine::Impl::note_update_waiting(bool waiting) {
  if (!waiting) {
    update_waited_steps = 0;
    return;
  }
  if (++update_waited_steps != options.update_wait_steps) return;
  for (auto& r : running) {
    r.second.interrupted = true;
    r.second.engine_cancel->cancel();
  }
}

void Engine::Impl::admit(std::vector<Pending>& admitted) {
  for (Pending& p : admitted) {
    try {
      runner->admit(p.id, p.src, p.options);
      running.emplace_back(p.id, Running{std::move(p.done), std::move(p.engine_cancel)});
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ++stats.failed;
      }
      try {  // without mu: the callback may take the GIL
        p.done({}, std::string("the request failed before decoding: ") + e.what());
      } catch (...) {
      }
    }
  }
}

void Engine::Impl::deliver(std::vector<decoding::StepRunner::Finished>& finished) {
  for (auto& f : finished) {
    auto it = std::find_if(running.begin(), running.end(), [&](const auto& r) { return r.first == f.id; });
    if (it == running.end()) continue;
    Done done = std::move(it->second.done);
    // Stopped for a weight update (not finished in the same step anyway): a failure to retry.
    if (it->second.interrupted && f.error.empty() &&
        std::any_of(f.results.begin(), f.results.end(), [](const GenerationResult& r) { return r.cancelled; })) {
      f.results.clear();
      f.error = "the request was stopped after " + std::to_string(options.update_wait_steps) +
                " steps to let a weight update in (the engine's update_wait_steps): submit it again to decode "
                "it with the new weights";
    }
    running.erase(it);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (f.error.empty()) ++stats.completed;
      else ++stats.failed;
    }
    try {
      done(std::move(f.results), f.error);
    } catch (...) {  // a callback's failure is its own business; the engine goes on
    }
  }
}

void Engine::Impl::loop() {
  std::optional<WeightsLock::Shared> reading;
  std::vector<Pending> admitted;
  while (true) {
    admitted.clear();
    bool small_phase = false, update_waiting = false;
    {
      std::unique_lock<std::mutex> lock(mu);
      wake.wait(lock, [&] { return closing || !queue.empty() || runner->running_requests() > 0; });
      if (closing) {  // everything still here stops at its next step
        for (Pending& p : queue) p.engine_cancel->cancel();
        for (auto& r : running) r.second.engine_cancel->cancel();
      }
      if (closing && queue.empty() && runner->running_requests() == 0) break;
      // A small-requests phase (small ones running or waiting, not a large step): large
      // newcomers wait for the next large step, so their encoder does not delay the small ones.
      small_phase = options.large_request_every > 1 && step_count % options.large_request_every != 0 &&
                    (runner->runs_request_of_at_most(options.small_request_rows) ||
                     std::any_of(queue.begin(), queue.end(),
                                 [&](const Pending& p) { return p.rows <= options.small_request_rows; }));
      // A weight update waits: admit nothing (the queue waits too), so that the running
      // requests drain and the lock is let go below; newcomers then start with the new weights.
      update_waiting = reading.has_value() && model.weights_lock().writer_waiting();
      // Admission: in order while requests fit; one that does not lets later ones pass for
      // kMaxBypassedSteps steps, then nothing passes it until it fits.
      int64_t tokens = 0, rows = 0, blocks = 0;
      for (auto it = queue.begin(); !update_waiting && it != queue.end();) {
        Pending& p = *it;
        if (small_phase && p.rows > options.small_request_rows) {  // deferred, not bypassed
          ++it;
          continue;
        }
        const bool cancelled = decoding::all_sources_cancelled(p.options, p.src.ids.dim(0));
        const bool room = runner->fits(rows + p.rows, blocks + p.blocks) &&
                          (admitted.empty() || tokens + p.tokens <= options.max_batch_tokens);
        if (cancelled || room) {
          if (!cancelled) {
            tokens += p.tokens;
            rows += p.rows;
            blocks += p.blocks;
          }
          admitted.push_back(std::move(p));
          it = queue.erase(it);
          continue;
        }
        if (++p.bypassed > kMaxBypassedSteps) break;
        ++it;
      }
      stats.queue_length = static_cast<int64_t>(queue.size());
    }
    note_update_waiting(update_waiting);
    if (!reading && (!admitted.empty() || runner->running_requests() > 0)) reading.emplace(model.weights_lock());
    {
      int64_t encoded = 0;
      for (const Pending& p : admitted) encoded += p.tokens;
      std::lock_guard<std::mutex> lock(mu);
      stats.encoder_tokens += encoded;
    }
    admit(admitted);
    publish_running();  // before the step: its tokens may reach clients before it returns
    // Small requests first: while one runs, the larger ones join every large_request_every-th step.
    ++step_count;
    const bool small_only = small_phase && runner->runs_request_of_at_most(options.small_request_rows);
    runner->step(small_only ? options.small_request_rows : -1);
    auto finished = runner->take_finished();
    {
      std::lock_guard<std::mutex> lock(mu);
      const int64_t n = runner->rows_last_step();
      if (n > 0) {
        ++stats.steps;
        stats.rows_last_step = n;
        stats.rows_total += n;
      }
    }
    publish_running();
    deliver(finished);
    if (runner->running_requests() == 0) reading.reset();  // a waiting weight update goes now
  }
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  EngineStats s = impl_->stats;
  s.queue_length = static_cast<int64_t>(impl_->queue.size());
  return s;
}

void Engine::close() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->closing = true;
    impl_->wake.notify_one();
  }
  if (impl_->thread.joinable()) {
    if (impl_->thread.get_id() == std::this_thread::get_id())
      throw_runtime_error("Engine::close called from the engine's own thread (a callback)");
    impl_->thread.join();
  }
}

}  // namespace tformer
