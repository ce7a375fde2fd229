// Self-test of the emulator's cp.async model (emu_mma.h): the semantics that let the
// emulated checks catch a missing cp_async_wait or __syncthreads in the kernels. Each case
// is a tiny kernel written against the emulator directly; a case that must be caught
// expects emu::launch to throw with the named hazard. Exits 1 on a failure.
//   built and run by emulate.sh
#include <cstdio>
#include <functional>
#include <string>

#include "emu_mma.h"

namespace mma = tformer::cuda::mma;

namespace {

int failures = 0;

void expect(bool ok, const std::string& name, const std::string& detail = "") {
  failures += !ok;
  std::printf("%-4s %-62s %s\n", ok ? "ok" : "FAIL", name.c_str(), detail.c_str());
}

// Runs one block of `threads` threads with `smem` bytes; returns the launch's error ("" if none).
std::string run(int threads, size_t smem, const std::function<void()>& body) {
  try {
    emu::launch(dim3(1), dim3(threads), smem, body);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

// Caught with one of the wanted messages (which one names the hazard depends on the order
// in which the emulator happens to run the reading and the refilling warp).
void expect_caught(const std::string& name, const std::string& error, std::initializer_list<const char*> want) {
  bool ok = false;
  for (const char* w : want) ok |= error.find(w) != std::string::npos;
  expect(ok, name, error.empty() ? "not caught" : error);
}

alignas(16) uint16_t src[4][32 * 8];  // 4 sources of 32 chunks: 16-bit values = chunk index + 1

uint16_t* smem16() { return reinterpret_cast<uint16_t*>(emu::g_dynamic_smem.data()); }

// Chunk j of source s into shared chunk s * 32 + j, by thread j.
void issue(int s) { mma::cp_async_16(smem16() + (s * 32 + threadIdx.x) * 8, src[s] + threadIdx.x * 8, true); }
uint16_t chunk_value(int s) { return smem16()[(s * 32 + threadIdx.x) * 8]; }

}  // namespace

int main() {
  for (int s = 0; s < 4; ++s)
    for (int i = 0; i < 32 * 8; ++i) src[s][i] = uint16_t(100 * s + i / 8 + 1);
  const size_t smem = 4 * 32 * 16;

  // wait_group<N>: all but the N newest committed groups; an empty group counts; an
  // uncommitted copy stays in flight; a read before completion sees the poison.
  bool seen_ok = true;
  std::string error = run(32, smem, [&] {
    issue(0), mma::cp_async_commit();
    issue(1), mma::cp_async_commit();
    mma::cp_async_commit();  // empty group
    issue(2);                // not committed
    const uint16_t before = chunk_value(0);
    mma::cp_async_wait<2>();  // group 0 only
    seen_ok &= before == 0xffff && chunk_value(0) == 1 + threadIdx.x && chunk_value(1) == 0xffff;
    mma::cp_async_wait<0>();  // groups 1 and 2; copy 2 still uncommitted
    seen_ok &= chunk_value(1) == 101 + threadIdx.x && chunk_value(2) == 0xffff;
    mma::cp_async_commit(), mma::cp_async_wait<0>();
    seen_ok &= chunk_value(2) == 201 + threadIdx.x;
    mma::cp_async_16(smem16() + (3 * 32 + threadIdx.x) * 8, src[3], false);  // zero fill
    mma::cp_async_commit(), mma::cp_async_wait<0>();
    seen_ok &= chunk_value(3) == 0;
  });
  expect(error.empty() && seen_ok, "wait_group order, empty groups, uncommitted copies, zero fill", error);

  // A correct double-buffered pipeline across 4 warps: no hazard reported.
  error = run(128, smem, [&] {
    uint32_t r[4];
    const int lane = threadIdx.x % 32;
    if (threadIdx.x < 32) issue(0);
    mma::cp_async_commit();
    for (int it = 0; it < 3; ++it) {
      if (threadIdx.x < 32) issue((it + 1) % 2);
      mma::cp_async_commit(), mma::cp_async_wait<1>();
      __syncthreads();
      mma::ldmatrix_x4(r, smem16() + ((it % 2) * 32 + lane) * 8);
      __syncthreads();
    }
    mma::cp_async_wait<0>();
  });
  expect(error.empty(), "double-buffered pipeline with its barriers: nothing reported", error);

  // The hazards, each in a pipeline that lacks one wait or one barrier.
  expect_caught("read before cp_async_wait", run(32, smem, [&] {
                  uint32_t r[4];
                  issue(0), mma::cp_async_commit();
                  mma::ldmatrix_x4(r, smem16() + threadIdx.x * 8);
                  mma::cp_async_wait<0>();
                }),
                {"is in flight"});
  expect_caught("read of another thread's copy with no barrier after the wait", run(64, smem, [&] {
                  uint32_t r[4];
                  if (threadIdx.x < 32) issue(0);
                  mma::cp_async_commit(), mma::cp_async_wait<0>();
                  if (threadIdx.x >= 32) mma::ldmatrix_x4(r, smem16() + (threadIdx.x - 32) * 8);
                }),
                {"no __syncthreads after"});
  expect_caught("refill of a chunk another warp read, no barrier between", run(64, smem, [&] {
                  uint32_t r[4];
                  if (threadIdx.x < 32) issue(0);
                  mma::cp_async_commit(), mma::cp_async_wait<0>();
                  __syncthreads();
                  if (threadIdx.x < 32) mma::ldmatrix_x4(r, smem16() + threadIdx.x * 8);
                  if (threadIdx.x >= 32) {  // a few shuffles: the emulator runs warp 0's reads first
                    int x = threadIdx.x;
                    for (int i = 0; i < 3; ++i) x = __shfl_xor_sync(0xffffffffu, x, 1);
                    mma::cp_async_16(smem16() + (threadIdx.x - 32) * 8, src[1], x >= 0);
                  }
                  mma::cp_async_commit(), mma::cp_async_wait<0>();
                }),
                {"write after read", "is in flight"});
  expect_caught("exit with copies in flight", run(32, smem, [&] {
                  issue(0), mma::cp_async_commit();
                }),
                {"cp.async copies in flight"});
  expect_caught("exit with uncommitted copies after wait_group 0", run(32, smem, [&] {
                  issue(0), mma::cp_async_wait<0>();
                }),
                {"cp.async copies in flight"});
  std::printf("check_emu_cp_async: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}
