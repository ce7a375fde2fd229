// The readers/writer lock over one model's weights. Readers (encode, forward, generate,
// a training step's forward/backward, copies of the parameters) share it for a whole
// call; writers (set_parameter(s), a TrainGraph taking the model over, the AdamW update)
// hold it alone, so a call sees one consistent set of weights from start to end.
//
// Why not std::shared_mutex: glibc's rwlock prefers readers, so a server that always
// has a generate running would starve a weight update forever. Here a waiting writer
// stops new readers. A thread may take the lock again while it holds it (a reader
// inside a reader, anything inside a writer: the bookkeeping is per thread), so a
// nested call never waits for a writer that waits for it. A thread that reads and then
// asks to write would wait for itself: that is refused with a RuntimeError.
//
// One acquisition per public call, never per decode step. The one long-lived reader, the
// engine (engine.h), holds it across steps and polls writer_waiting() between them: it then
// stops admitting requests and lets go once its running ones have finished.
#pragma once

#include <condition_variable>
#include <mutex>

namespace tformer {

class WeightsLock {
 public:
  // RAII holders; movable so that a binding can keep one alive across Python code.
  class Shared {
   public:
    explicit Shared(const WeightsLock& lock);
    Shared(Shared&& other) noexcept : lock_(other.lock_) { other.lock_ = nullptr; }
    Shared& operator=(Shared&&) = delete;
    ~Shared();

   private:
    const WeightsLock* lock_;
  };
  class Exclusive {
   public:
    explicit Exclusive(const WeightsLock& lock);
    Exclusive(Exclusive&& other) noexcept : lock_(other.lock_) { other.lock_ = nullptr; }
    Exclusive& operator=(Exclusive&&) = delete;
    ~Exclusive();

   private:
    const WeightsLock* lock_;
  };

  // True when the calling thread holds this lock (shared or exclusive).
  bool held_by_this_thread() const;
  // True while some thread waits to take it exclusively: a long-lived reader should let go.
  bool writer_waiting() const;

 private:
  void lock_shared() const;
  void lock_exclusive() const;
  void unlock() const;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  mutable int readers_ = 0;          // threads holding it shared
  mutable int writers_waiting_ = 0;  // they keep new readers out
  mutable bool writer_ = false;
};

}  // namespace tformer
