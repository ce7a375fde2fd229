// The tensor-core primitives of cuda/mma.cuh for the CPU emulator: the same names and
// fragment layouts (see mma.cuh's header), computed on the host. Each is warp-collective:
// the lanes publish their registers or row addresses through emu::exchange and every lane
// then assembles its own result from the warp's table, as the hardware does.
// What this checks: a kernel's fragment indexing, row addresses (ldmatrix needs 16-byte
// aligned rows, cp.async 16-byte aligned source and destination: both are enforced), and
// that the whole warp takes part. What it cannot: that mma.cuh's layouts are the
// hardware's — bench/gpu/check_mma.cu runs the same composition on a GPU for that.
//
// cp.async is asynchronous here as in PTX: cp_async_16 only records the copy in the
// thread's open group and fills the destination with 0xff bytes (NaN in f16, bf16 and f32:
// a read before completion fails the checks loudly); cp_async_commit closes the group
// (an empty one counts, as in PTX); cp_async_wait<N> completes, in issue order, the copies
// of every committed group but the N most recent (uncommitted copies stay in flight). A
// thread that exits with copies in flight fails the launch. The hardware may read the
// source at any time between issue and wait; reading it at the wait is equivalent for our
// kernels, whose cp.async sources are read-only inputs.
// Beyond the poison, a shadow of the dynamic shared memory (16-byte chunks) catches the
// ordering hazards by name, whatever the data: ldmatrix of a chunk still in flight, or
// completed by another thread with no __syncthreads since (wait_group makes the data
// visible to the issuing thread only); and a cp.async into a chunk that another warp read
// with ldmatrix since the last __syncthreads (write after read: the refill may land first).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#include <type_traits>

#include "emu.h"

namespace tformer::cuda::mma {

namespace emu_detail {

template <typename T>
inline float to_float(uint16_t bits) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  } else {
    __half_raw r;
    r.x = bits;
    return __half2float(__half(r));
  }
}

inline uint16_t half_of(uint32_t word, int which) { return uint16_t(which ? word >> 16 : word & 0xffff); }

inline void require_aligned(const void* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0)
    throw std::runtime_error(std::string("emu: ") + what + " address not 16-byte aligned");
}

// ---- cp.async ordering shadow: one entry per 16-byte chunk of the dynamic shared memory.
struct Chunk {
  uint64_t serial = 0;  // the block it describes (emu::g_block_serial); 0 or older: nothing known
  bool in_flight = false;
  int writer = -1;        // thread that issued / completed the last cp.async into it
  unsigned done_gen = 0;  // block barrier generation at its completion
  int reader_warp = -1;   // warp that read it by ldmatrix in read_gen; -2: more than one
  unsigned read_gen = 0;
};
inline std::vector<Chunk> g_chunks;

// The chunk holding p, or nullptr outside the dynamic shared memory (not tracked).
// -DEMU_NO_SMEM_SHADOW leaves only the poison (to test the emulator itself).
inline Chunk* chunk_of(const void* p) {
#ifdef EMU_NO_SMEM_SHADOW
  if (p != nullptr) return nullptr;
#endif
  const char* base = ::emu::g_dynamic_smem.data();
  const char* c = static_cast<const char*>(p);
  if (c < base || c >= base + ::emu::g_dynamic_smem.size()) return nullptr;
  const size_t i = size_t(c - base) / 16;
  if (g_chunks.size() < ::emu::g_dynamic_smem.size() / 16 + 1) g_chunks.resize(::emu::g_dynamic_smem.size() / 16 + 1);
  Chunk& k = g_chunks[i];
  if (k.serial != ::emu::g_block_serial) k = Chunk{}, k.serial = ::emu::g_block_serial;
  return &k;
}

inline std::string smem_offset(const void* p) {
  return "shared byte " + std::to_string(static_cast<const char*>(p) - ::emu::g_dynamic_smem.data());
}

// This thread reads the 16-byte chunk at p (an ldmatrix row).
inline void note_read(const void* p) {
  Chunk* k = chunk_of(p);
  if (k == nullptr) return;
  const ::emu::Block& b = ::emu::block();
  const int me = b.current, warp = b.threads[me].warp;
  if (k->in_flight)
    ::emu::report("emu: ldmatrix by thread " + std::to_string(me) + " reads " + smem_offset(p) + " while thread " +
                  std::to_string(k->writer) + "'s cp.async into it is in flight (a missing cp_async_wait, or a refill " +
                  "issued before every warp had finished reading the chunk)");
  else if (k->writer >= 0 && k->writer != me && k->done_gen == b.block_gen)
    ::emu::report("emu: ldmatrix by thread " + std::to_string(me) + " reads " + smem_offset(p) + ", copied by thread " +
                  std::to_string(k->writer) + ", with no __syncthreads after that thread's cp_async_wait");
  if (k->read_gen != b.block_gen || k->reader_warp == -1) k->reader_warp = warp, k->read_gen = b.block_gen;
  else if (k->reader_warp != warp) k->reader_warp = -2;
}

inline void note_issue(void* p) {
  Chunk* k = chunk_of(p);
  if (k == nullptr) return;
  const ::emu::Block& b = ::emu::block();
  const int me = b.current, warp = b.threads[me].warp;
  if (k->reader_warp != -1 && k->read_gen == b.block_gen && k->reader_warp != warp)
    ::emu::report("emu: cp.async by thread " + std::to_string(me) + " refills " + smem_offset(p) +
                  ", read by ldmatrix of another warp with no __syncthreads since (write after read)");
  if (k->in_flight && k->writer != me)
    ::emu::report("emu: cp.async by thread " + std::to_string(me) + " into " + smem_offset(p) +
                  " while thread " + std::to_string(k->writer) + "'s copy there is in flight");
  k->in_flight = true, k->writer = me;
}

inline void note_done(void* p) {
  Chunk* k = chunk_of(p);
  if (k == nullptr) return;
  const ::emu::Block& b = ::emu::block();
  k->in_flight = false, k->writer = b.current, k->done_gen = b.block_gen;
}

inline const uint32_t* exchange_pointer(const void* p) {
  uint32_t mine[2];
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  mine[0] = uint32_t(u), mine[1] = uint32_t(uint64_t(u) >> 32);
  return ::emu::exchange(mine, 2);
}

inline const uint16_t* pointer_of(const uint32_t* table, int lane) {
  const uint32_t* w = table + lane * ::emu::kExchangeWords;
  return reinterpret_cast<const uint16_t*>(uintptr_t(uint64_t(w[0]) | (uint64_t(w[1]) << 32)));
}

// Register i of this lane for matrices 0..n-1 (see mma.cuh).
template <int N>
inline void ldmatrix(uint32_t (&r)[N], const void* row, bool trans) {
  require_aligned(row, "ldmatrix row");
  const uint32_t* table = exchange_pointer(row);
  const int lane = ::emu::self().lane;
  for (int i = 0; i < N; ++i) {
    uint16_t lo, hi;
    if (!trans) {
      const uint16_t* p = pointer_of(table, 8 * i + lane / 4);
      note_read(p);
      lo = p[2 * (lane % 4)], hi = p[2 * (lane % 4) + 1];
    } else {
      const uint16_t *p0 = pointer_of(table, 8 * i + 2 * (lane % 4)), *p1 = pointer_of(table, 8 * i + 2 * (lane % 4) + 1);
      note_read(p0), note_read(p1);
      lo = p0[lane / 4], hi = p1[lane / 4];
    }
    r[i] = uint32_t(lo) | (uint32_t(hi) << 16);
  }
}

}  // namespace emu_detail

template <typename T>
inline void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "f16 or bf16 inputs");
  using emu_detail::half_of;
  const uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  const uint32_t* w = ::emu::exchange(mine, 6);
  constexpr int W = ::emu::kExchangeWords;
  // A[r][c]: lane (r % 8) * 4 + (c % 8) / 2, register (r >= 8) + 2 (c >= 8), half c % 2.
  auto A = [&](int r, int c) {
    return emu_detail::to_float<T>(half_of(w[((r % 8) * 4 + (c % 8) / 2) * W + (r >= 8) + 2 * (c >= 8)], c % 2));
  };
  // B[k][n]: lane n * 4 + (k % 8) / 2, register 4 + (k >= 8), half k % 2.
  auto B = [&](int k, int n) {
    return emu_detail::to_float<T>(half_of(w[(n * 4 + (k % 8) / 2) * W + 4 + (k >= 8)], k % 2));
  };
  const int lane = ::emu::self().lane, g = lane / 4, t = lane % 4;
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int r = g + 8 * (i >= 2), c = 2 * t + (i & 1);
    double s = 0.0;  // products of 16-bit values are exact; the sum rounds once
    for (int k = 0; k < 16; ++k) s += double(A(r, k)) * double(B(k, c));
    out[i] = float(double(d[i]) + s);
  }
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) { emu_detail::ldmatrix(r, row, false); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) { emu_detail::ldmatrix(r, row, true); }
inline void ldmatrix_x2(uint32_t (&r)[2], const void* row) { emu_detail::ldmatrix(r, row, false); }
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) { emu_detail::ldmatrix(r, row, true); }

// Asynchronous as in PTX (see the header): issue records and poisons, wait completes.
inline void cp_async_16(void* smem, const void* gmem, bool valid) {
  emu_detail::require_aligned(smem, "cp.async shared");
  if (valid) emu_detail::require_aligned(gmem, "cp.async global");
  // A zero-filled chunk still gets a mapped source address (PTX does not promise to ignore it).
  if (gmem == nullptr) ::emu::report("emu: cp.async with a null source address");
  emu_detail::note_issue(smem);
  ::emu::self().copies.push_back({smem, gmem, valid, ::emu::Thread::kOpenGroup});
  std::memset(smem, 0xff, 16);
}
inline void cp_async_commit() {
  ::emu::Thread& t = ::emu::self();
  for (::emu::Thread::AsyncCopy& c : t.copies)
    if (c.group == ::emu::Thread::kOpenGroup) c.group = t.groups;
  ++t.groups;
}
template <int N>
inline void cp_async_wait() {
  static_assert(N >= 0, "wait_group N >= 0");
  ::emu::Thread& t = ::emu::self();
  const unsigned limit = t.groups > unsigned(N) ? t.groups - unsigned(N) : 0;  // groups [0, limit) complete
  size_t kept = 0;
  for (const ::emu::Thread::AsyncCopy& c : t.copies) {
    if (c.group != ::emu::Thread::kOpenGroup && c.group < limit) {
      if (c.valid) std::memcpy(c.dst, c.src, 16);  // the source read now: see the header
      else std::memset(c.dst, 0, 16);
      emu_detail::note_done(c.dst);
    } else {
      t.copies[kept++] = c;
    }
  }
  t.copies.resize(kept);
}

template <typename T>
inline uint32_t pack2(float lo, float hi) {
  uint16_t l, h;
  if constexpr (std::is_same_v<T, __half>) {
    const __half a = __float2half_rn(lo), b = __float2half_rn(hi);
    std::memcpy(&l, &a, 2), std::memcpy(&h, &b, 2);
  } else {
    const __nv_bfloat16 a = __float2bfloat16_rn(lo), b = __float2bfloat16_rn(hi);
    std::memcpy(&l, &a, 2), std::memcpy(&h, &b, 2);
  }
  return uint32_t(l) | (uint32_t(h) << 16);
}

}  // namespace tformer::cuda::mma
