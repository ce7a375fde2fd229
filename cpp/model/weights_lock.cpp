#include "tformer/weights_lock.h"

#include <algorithm>
#include <vector>

#include "tformer/errors.h"

namespace tformer {
namespace {

// The locks this thread holds: usually none or one (a model), so a linear search.
struct Held {
  const WeightsLock* lock;
  int depth;
  bool exclusive;
};
thread_local std::vector<Held> t_held;

Held* find_held(const WeightsLock* lock) {
  for (Held& h : t_held)
    if (h.lock == lock) return &h;
  return nullptr;
}

}  // namespace

bool WeightsLock::held_by_this_thread() const { return find_held(this) != nullptr; }

bool WeightsLock::writer_waiting() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return writers_waiting_ > 0;
}

void WeightsLock::lock_shared() const {
  if (Held* h = find_held(this)) {  // nested: a reader, or a writer reading, already holds it
    ++h->depth;
    return;
  }
  std::unique_lock<std::mutex> guard(mutex_);
  changed_.wait(guard, [this] { return !writer_ && writers_waiting_ == 0; });
  ++readers_;
  t_held.push_back({this, 1, false});
}

void WeightsLock::lock_exclusive() const {
  if (Held* h = find_held(this)) {
    if (!h->exclusive)
      throw_runtime_error("the model's weights cannot be changed by a thread that is using them (for example from a "
                          "generate_stream callback, a tformer.Engine callback (on_done, on_token, a future's done "
                          "callback) or a training step's bucket callback): it would wait for itself; change the "
                          "weights from another thread");
    ++h->depth;
    return;
  }
  std::unique_lock<std::mutex> guard(mutex_);
  ++writers_waiting_;
  changed_.wait(guard, [this] { return !writer_ && readers_ == 0; });
  --writers_waiting_;
  writer_ = true;
  t_held.push_back({this, 1, true});
}

void WeightsLock::unlock() const {
  Held* h = find_held(this);
  if (h == nullptr) return;  // not held by this thread: nothing of ours to release
  if (--h->depth > 0) return;
  const bool exclusive = h->exclusive;
  t_held.erase(t_held.begin() + (h - t_held.data()));
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (exclusive) writer_ = false;
    else --readers_;
  }
  changed_.notify_all();
}

WeightsLock::Shared::Shared(const WeightsLock& lock) : lock_(&lock) { lock.lock_shared(); }
WeightsLock::Shared::~Shared() {
  if (lock_) lock_->unlock();
}

WeightsLock::Exclusive::Exclusive(const WeightsLock& lock) : lock_(&lock) { lock.lock_exclusive(); }
WeightsLock::Exclusive::~Exclusive() {
  if (lock_) lock_->unlock();
}

}  // namespace tformer
