// The tensor-core primitives of cuda/mma.cuh for the CPU emulator: the same names and
// fragment layouts (see mma.cuh's header), computed on the host. Each is warp-collective:
// the lanes publish their registers or row addresses through emu::exchange and every lane
// then assembles its own result from the warp's table, as the hardware does.
// What this checks: a kernel's fragment indexing, row addresses (ldmatrix needs 16-byte
// aligned rows, cp.async 16-byte aligned source and destination: both are enforced), and
// that the whole warp takes part. What it cannot: that mma.cuh's layouts are the
// hardware's — bench/gpu/check_mma.cu runs the same composition on a GPU for that.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
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
      lo = p[2 * (lane % 4)], hi = p[2 * (lane % 4) + 1];
    } else {
      lo = pointer_of(table, 8 * i + 2 * (lane % 4))[lane / 4];
      hi = pointer_of(table, 8 * i + 2 * (lane % 4) + 1)[lane / 4];
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

// Synchronous on the emulator: the data is there at once (a missing wait goes unnoticed).
inline void cp_async_16(void* smem, const void* gmem, bool valid) {
  emu_detail::require_aligned(smem, "cp.async shared");
  if (valid) emu_detail::require_aligned(gmem, "cp.async global");
  if (valid) std::memcpy(smem, gmem, 16);
  else std::memset(smem, 0, 16);
}
inline void cp_async_commit() {}
template <int N>
inline void cp_async_wait() {}

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
