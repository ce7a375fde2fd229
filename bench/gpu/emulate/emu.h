// A CPU emulator of the CUDA execution model, just enough to run this project's kernels
// and launchers (cuda/*.cu, preprocessed by emulate.py) on a machine without a GPU:
// each block's threads are coroutines scheduled round-robin on one OS thread (a stack
// switch of a few instructions on x86-64, ucontext elsewhere: glibc's swapcontext makes a
// system call per switch, which cost 85 % of the time of a decoding test);
// __syncthreads and the warp shuffles are barriers between them; __shared__ is static
// storage (blocks run one after another); global memory is host memory.
// What it checks: indexing, masks, shared-memory tiling, shuffle lanes, barrier placement
// (a barrier that not every thread reaches is reported as a deadlock), cp.async ordering
// (emu_mma.h: asynchronous copies, hazards reported through `report`). What it cannot:
// timing, other races between warps that real hardware would interleave differently, and
// the exact rounding of device math functions (expf, exp2f, erff use the host's libm).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <driver_types.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <climits>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

// ---------------------------------------------------------------- language

#undef __shared__
#define __shared__ static
#undef __syncthreads
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace emu {

constexpr int kMaxThreads = 1024;
constexpr size_t kStackBytes = 256 * 1024;
constexpr int kExchangeWords = 8;  // words a lane can publish in one warp exchange

// ---------------------------------------------------------------- coroutine switch
#if defined(__x86_64__)
// A suspended coroutine is its stack pointer; the stack holds what the System V ABI has
// the callee save (rbx, rbp, r12-r15, the SSE and x87 control words) and the return address.
struct Context {
  void* sp = nullptr;
};

// Saves the caller's state on its stack and its stack pointer in *save, resumes `next`.
#if defined(__clang__)
__attribute__((naked, noinline))
#else
__attribute__((naked, noinline, noipa))  // noipa: no interprocedural assumptions about it
#endif
inline void switch_stack(void** /*save: rdi*/, void* /*next: rsi*/) {
  asm volatile(
      "pushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n\t"
      "subq $8, %rsp\n\tstmxcsr (%rsp)\n\tfnstcw 4(%rsp)\n\t"
      "movq %rsp, (%rdi)\n\tmovq %rsi, %rsp\n\t"
      "ldmxcsr (%rsp)\n\tfldcw 4(%rsp)\n\taddq $8, %rsp\n\t"
      "popq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n\tret\n\t");
}

inline void swap(Context& from, const Context& to) { switch_stack(&from.sp, to.sp); }

// A context that starts `entry` (which must never return) on the given stack, with the
// current control words.
inline void make_context(Context& c, char* stack, size_t size, void (*entry)()) {
  auto* sp = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15));
  *--sp = 0;  // entry's return address: none; rsp is then 8 mod 16, as after a call
  *--sp = reinterpret_cast<uint64_t>(entry);
  for (int i = 0; i < 6; ++i) *--sp = 0;  // rbp rbx r12-r15
  --sp;
  uint32_t mxcsr = 0;
  uint16_t fpcw = 0;
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fpcw));
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpcw, 2);
  c.sp = sp;
}
#else
struct Context {
  ucontext_t uc;
};
inline void swap(Context& from, const Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_context(Context& c, char* stack, size_t size, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;  // entry never returns
  makecontext(&c.uc, entry, 0);
}
#endif

struct Thread {
  Context ctx;
  uint3 tid;
  int warp = 0, lane = 0;
  bool done = false;
  int wait = -1;  // -1 running, 0 the block barrier, 1 + w warp w's barrier
  unsigned wait_gen = 0;
  unsigned shuffles = 0;  // shuffles done: picks the slot bank
  unsigned exchanges = 0;  // warp exchanges done (emu_mma.h): picks the exchange bank
  // cp.async copies issued and not yet completed (emu_mma.h models them), in issue order.
  struct AsyncCopy {
    void* dst;
    const void* src;
    bool valid;
    unsigned group;  // committed group number, or kOpenGroup before cp_async_commit
  };
  static constexpr unsigned kOpenGroup = UINT_MAX;
  std::vector<AsyncCopy> copies;
  unsigned groups = 0;  // cp.async groups committed
};

struct Block {
  std::vector<Thread> threads;
  std::vector<std::vector<char>> stacks;
  Context sched;
  int current = 0, active = 0;
  unsigned block_count = 0, block_gen = 0;
  std::vector<unsigned> warp_count, warp_gen, warp_active;
  std::vector<uint64_t> slots;  // [bank][warp][lane]
  std::vector<uint32_t> exchange;  // [bank][warp][lane][kExchangeWords]
  std::function<void()> body;
};

inline Block& block() {
  static Block b;
  return b;
}
inline dim3 g_grid, g_block_dim;
inline uint3 g_block_idx;
inline std::vector<char> g_dynamic_smem;
inline uint64_t g_block_serial = 0;  // counts the blocks run: tells state of an earlier block apart

// A hazard found inside a kernel, where an exception cannot unwind out of the coroutine:
// the first one is kept and launch() throws it once the block has run.
inline std::string g_kernel_error;
inline void report(const std::string& what) {
  if (g_kernel_error.empty()) g_kernel_error = what;
}

inline Thread& self() { return block().threads[block().current]; }

// Not finished, and not waiting at a barrier that is still closed.
inline bool runnable(const Block& b, const Thread& t) {
  if (t.done) return false;
  if (t.wait == 0) return b.block_gen != t.wait_gen;
  if (t.wait > 0) return b.warp_gen[t.wait - 1] != t.wait_gen;
  return true;
}

// Hands over to the next runnable thread after this one in index order, or back to the
// scheduler after the last: the scheduler's round-robin order without a detour through it
// (one switch per wait instead of two).
inline void yield() {
  Block& b = block();
  Thread& t = b.threads[b.current];
  const int n = static_cast<int>(b.threads.size());
  for (int j = b.current + 1; j < n; ++j) {
    Thread& next = b.threads[j];
    if (!runnable(b, next)) continue;
    next.wait = -1;
    b.current = j;
    swap(t.ctx, next.ctx);
    return;
  }
  swap(t.ctx, b.sched);
}

inline void sync_block() {
  Block& b = block();
  Thread& t = self();
  const unsigned gen = b.block_gen;
  if (++b.block_count == static_cast<unsigned>(b.active)) {
    b.block_count = 0, ++b.block_gen;
    return;
  }
  t.wait = 0, t.wait_gen = gen;
  yield();
}

inline void sync_warp() {
  Block& b = block();
  Thread& t = self();
  const unsigned gen = b.warp_gen[t.warp];
  if (++b.warp_count[t.warp] == b.warp_active[t.warp]) {
    b.warp_count[t.warp] = 0, ++b.warp_gen[t.warp];
    return;
  }
  t.wait = 1 + t.warp, t.wait_gen = gen;
  yield();
}

template <typename T>
T shuffle(T v, int src) {
  static_assert(sizeof(T) <= 8, "one slot");
  Block& b = block();
  Thread& t = self();
  const size_t warps = b.warp_count.size();
  uint64_t* bank = b.slots.data() + (t.shuffles++ & 1) * warps * 32 + t.warp * 32;
  std::memcpy(&bank[t.lane], &v, sizeof(T));
  sync_warp();  // double-buffered banks: one barrier per shuffle suffices
  T r;
  std::memcpy(&r, &bank[src & 31], sizeof(T));
  return r;
}

// Every lane of the warp publishes n <= kExchangeWords words; returns the warp's table
// (lane l's words at [l * kExchangeWords]), valid until this lane's next exchange but one
// (two banks: a lane can only reach that one after every lane has passed the next barrier,
// i.e. finished reading this table). Warp-collective, like the instructions it models.
inline const uint32_t* exchange(const uint32_t* mine, int n) {
  Block& b = block();
  Thread& t = self();
  const size_t warps = b.warp_count.size();
  uint32_t* bank = b.exchange.data() + ((t.exchanges++ & 1) * warps + t.warp) * 32 * kExchangeWords;
  std::memcpy(bank + t.lane * kExchangeWords, mine, n * sizeof(uint32_t));
  sync_warp();
  return bank;
}

[[noreturn]] inline void thread_entry() {
  Block& b = block();
  b.body();
  b.threads[b.current].done = true;
  swap(b.threads[b.current].ctx, b.sched);  // never resumed
  std::abort();
}

// Runs `body` as one thread of each block of grid x block, blocks one after another.
inline void launch(dim3 grid, dim3 block_dim, size_t smem, const std::function<void()>& body) {
  const int n = static_cast<int>(block_dim.x * block_dim.y * block_dim.z);
  if (n <= 0 || n > kMaxThreads || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535)
    throw std::runtime_error("emu: bad launch configuration");
  if (smem > 227 * 1024) throw std::runtime_error("emu: " + std::to_string(smem) + " bytes of shared memory");
  Block& b = block();
  g_grid = grid, g_block_dim = block_dim;
  g_dynamic_smem.assign(smem + 16, 0);
  b.body = body;
  b.threads.resize(n);
  if (b.stacks.size() < static_cast<size_t>(n)) b.stacks.resize(n, std::vector<char>(kStackBytes));
  const int warps = (n + 31) / 32;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        g_block_idx = {bx, by, bz};
        ++g_block_serial;
        b.active = n, b.block_count = 0, b.block_gen = 0;
        b.warp_count.assign(warps, 0), b.warp_gen.assign(warps, 0), b.warp_active.assign(warps, 0);
        b.slots.assign(2 * warps * 32, 0);
        b.exchange.assign(size_t(2) * warps * 32 * kExchangeWords, 0);
        for (int i = 0; i < n; ++i) {
          Thread& t = b.threads[i];
          t = Thread{};
          t.tid = {unsigned(i % block_dim.x), unsigned(i / block_dim.x % block_dim.y),
                   unsigned(i / (block_dim.x * block_dim.y))};
          t.warp = i / 32, t.lane = i % 32;
          ++b.warp_active[t.warp];
          // Stack tops staggered by 64 bytes: equally aligned tops would all map to the same cache sets.
          make_context(t.ctx, b.stacks[i].data(), kStackBytes - (i % 64) * 64, thread_entry);
        }
        int remaining = n;
        while (remaining > 0) {
          bool progress = false;
          for (int i = 0; i < n; ++i) {
            if (!runnable(b, b.threads[i])) continue;
            b.threads[i].wait = -1;
            b.current = i;
            swap(b.sched, b.threads[i].ctx);
            progress = true;
            i = b.current;  // where the chain of hand-overs (yield) came back from
            Thread& t = b.threads[i];
            if (t.done) {  // an exited thread no longer counts at the barriers
              --remaining, --b.active, --b.warp_active[t.warp];
              if (b.block_count > 0 && b.block_count == static_cast<unsigned>(b.active))
                b.block_count = 0, ++b.block_gen;
              if (b.warp_count[t.warp] > 0 && b.warp_count[t.warp] == b.warp_active[t.warp])
                b.warp_count[t.warp] = 0, ++b.warp_gen[t.warp];
            }
          }
          if (!progress)
            throw std::runtime_error("emu: deadlock in block (" + std::to_string(bx) + ", " + std::to_string(by) + ", " +
                                     std::to_string(bz) + "): a barrier not reached by every thread");
        }
        for (int i = 0; i < n; ++i)
          if (!b.threads[i].copies.empty())
            report("emu: thread " + std::to_string(i) + " exited with " + std::to_string(b.threads[i].copies.size()) +
                   " cp.async copies in flight (no cp_async_wait covers them)");
        if (!g_kernel_error.empty()) {
          const std::string what = g_kernel_error + " in block (" + std::to_string(bx) + ", " + std::to_string(by) +
                                   ", " + std::to_string(bz) + ")";
          g_kernel_error.clear();
          throw std::runtime_error(what);
        }
      }
}

struct LaunchConfig {
  dim3 grid, block;
  size_t smem = 0;
};
inline LaunchConfig config(dim3 g, dim3 b, size_t smem = 0, cudaStream_t = nullptr) { return {g, b, smem}; }

}  // namespace emu

#define threadIdx (::emu::self().tid)
#define blockIdx (::emu::g_block_idx)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid)
#define __syncthreads() ::emu::sync_block()

template <typename T>
inline T __shfl_sync(unsigned, T v, int src) { return ::emu::shuffle(v, src); }
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask) { return ::emu::shuffle(v, ::emu::self().lane ^ mask); }

// Correctly rounded single operations (the host compiles without FMA contraction).
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
// Atomics: threads switch only at barriers, so a plain read-modify-write is atomic here.
inline float atomicAdd(float* address, float v) {
  const float old = *address;
  *address = old + v;
  return old;
}
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max(int64_t a, int64_t b) { return a > b ? a : b; }

// ---------------------------------------------------------------- runtime API

inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
// Multiprocessors: an H100's 132, or EMU_SM_COUNT (read at each call, so that a check can
// force the decode kernel's key split on and off); every other attribute: 227 KiB.
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int) {
  const char* sms = std::getenv("EMU_SM_COUNT");
  *v = attr != cudaDevAttrMultiProcessorCount ? 227 * 1024 : sms != nullptr ? std::atoi(sms) : 132;
  return cudaSuccess;
}
inline cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind, cudaStream_t) {
  std::memmove(dst, src, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                                     cudaMemcpyKind, cudaStream_t) {
  if (dpitch < width || spitch < width) return cudaErrorInvalidPitchValue;
  for (size_t r = 0; r < height; ++r)
    std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* dst, int value, size_t n, cudaStream_t) {
  std::memset(dst, value, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemset2DAsync(void* dst, size_t pitch, int value, size_t width, size_t height, cudaStream_t) {
  if (pitch < width) return cudaErrorInvalidPitchValue;
  for (size_t r = 0; r < height; ++r) std::memset(static_cast<char*>(dst) + r * pitch, value, width);
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
