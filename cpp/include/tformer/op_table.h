// How an op reaches a device without a virtual method per op (docs/ARCHITECTURE.md, "How
// to add an op"). Every op has a params struct (tformer/ops/<family>.h) that names it:
//
//   struct LayerNormParams { static constexpr char op_name[] = "layer_norm"; ... };
//
// (and `using Result = double;` when the op returns something). Each device fills an
// OpTable with one entry per op, by one registration line in the op's file on that device
// (TFORMER_CPU_OP in the CPU kernel file, TFORMER_CUDA_OP in the .cu file). The core calls
// `backend.run(params, device_index)` (backend.h), which finds the entry by name the first
// time and keeps the function pointer: later calls cost one indirect call, as the virtual
// method did.
//
// Header-only on purpose: the CUDA library (which does not link the core) keeps its own
// table with the same code.
#pragma once

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace tformer {

class Backend;

// An entry, type-erased: `Result (*)(Backend&, const P&, int device_index)`.
using OpFn = void (*)();

// What op P returns: void unless its params struct says `using Result = ...;`.
template <class P, class = void>
struct OpResult {
  using type = void;
};
template <class P>
struct OpResult<P, std::void_t<typename P::Result>> {
  using type = typename P::Result;
};
template <class P>
using OpEntry = typename OpResult<P>::type (*)(Backend&, const P&, int);

// The params struct a function takes first: OpParamsOf<decltype(&layer_norm)>::type is
// LayerNormParams (registration macros name the function only).
template <class F>
struct OpParamsOf;
template <class R, class P, class... A>
struct OpParamsOf<R (*)(const P&, A...)> {
  using type = P;
};

// A device's ops, by name. Filled while the libraries load (static registration), read
// after; fixed capacity so that no allocation happens before main.
class OpTable {
 public:
  static constexpr int kCapacity = 64;

  void add(const char* name, OpFn fn) {
    for (int i = 0; i < size_; ++i) {
      if (std::strcmp(names_[i], name) == 0) throw std::logic_error(std::string("op registered twice: ") + name);
    }
    if (size_ == kCapacity) throw std::logic_error("OpTable is full: raise OpTable::kCapacity");
    names_[size_] = name;
    fns_[size_] = fn;
    ++size_;
  }
  // Null when the device has no such op.
  OpFn find(const char* name) const {
    for (int i = 0; i < size_; ++i) {
      if (std::strcmp(names_[i], name) == 0) return fns_[i];
    }
    return nullptr;
  }
  int size() const { return size_; }
  const char* name(int i) const { return names_[i]; }

 private:
  const char* names_[kCapacity] = {};
  OpFn fns_[kCapacity] = {};
  int size_ = 0;
};

// The slot of op P in a Backend's cache of resolved entries: numbered on first use, per
// binary (only the binary that calls Backend::run uses the numbers).
inline int next_op_slot() {
  static std::atomic<int> next{0};
  const int slot = next.fetch_add(1);
  if (slot >= OpTable::kCapacity) throw std::logic_error("more op kinds than OpTable::kCapacity");
  return slot;
}
template <class P>
int op_slot() {
  static const int slot = next_op_slot();
  return slot;
}

}  // namespace tformer
