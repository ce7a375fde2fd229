// A CPU emulator of the CUDA execution model, just enough to run this project's kernels
// and launchers (cuda/*.cu, preprocessed by emulate.py) on a machine without a GPU:
// each block's threads are coroutines (ucontext) scheduled round-robin on one OS thread;
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

struct Thread {
  ucontext_t ctx;
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
  ucontext_t sched;
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

inline void yield() {
  Block& b = block();
  swapcontext(&b.threads[b.current].ctx, &b.sched);
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

inline void thread_entry() {
  Block& b = block();
  b.body();
  b.threads[b.current].done = true;  // returns to uc_link, the scheduler
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
          getcontext(&t.ctx);
          t.ctx.uc_stack.ss_sp = b.stacks[i].data();
          t.ctx.uc_stack.ss_size = kStackBytes;
          t.ctx.uc_link = &b.sched;
          makecontext(&t.ctx, thread_entry, 0);
        }
        int remaining = n;
        while (remaining > 0) {
          bool progress = false;
          for (int i = 0; i < n; ++i) {
            Thread& t = b.threads[i];
            if (t.done) continue;
            if (t.wait == 0 && b.block_gen == t.wait_gen) continue;
            if (t.wait > 0 && b.warp_gen[t.wait - 1] == t.wait_gen) continue;
            t.wait = -1;
            b.current = i;
            swapcontext(&b.sched, &t.ctx);
            progress = true;
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
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
