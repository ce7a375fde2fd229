// Opt-in op timing: with TFORMER_PROFILE=1 in the environment, every op records its
// wall time (device-synchronised) under its name; profile_report() lists the totals.
#pragma once

#include <chrono>
#include <string>

namespace tformer::profile {

bool enabled();
void record(const char* op, double seconds);
std::string report();  // one line per op: total ms, calls, share
void reset();

// Times the enclosing scope when profiling is on.
class Scope {
 public:
  explicit Scope(const char* op) : op_(enabled() ? op : nullptr) {
    if (op_) start_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (op_) record(op_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* op_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tformer::profile
