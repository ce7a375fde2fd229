// CancelToken: a flag another thread sets (cancel()) and an optional steady-clock
// deadline. generate checks the tokens of its sources once per step and before the
// encoder; a cancelled source is finished at once (docs/DECODING.md, "Cancellation").
#pragma once

#include <atomic>
#include <chrono>

namespace tformer {

class CancelToken {
 public:
  using Clock = std::chrono::steady_clock;

  CancelToken() = default;
  // Cancelled by itself `timeout_seconds` from now (finite, >= 0; the caller checks).
  explicit CancelToken(double timeout_seconds)
      : has_deadline_(true),
        deadline_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(timeout_seconds))) {}

  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  void cancel() noexcept { flag_.store(true, std::memory_order_relaxed); }
  bool cancelled() const noexcept {
    return flag_.load(std::memory_order_relaxed) || (has_deadline_ && Clock::now() >= deadline_);
  }
  bool has_deadline() const noexcept { return has_deadline_; }
  // Seconds left before the deadline (negative once passed); only with has_deadline().
  double remaining_seconds() const noexcept {
    return std::chrono::duration<double>(deadline_ - Clock::now()).count();
  }

 private:
  std::atomic<bool> flag_{false};
  bool has_deadline_ = false;
  Clock::time_point deadline_{};
};

}  // namespace tformer
