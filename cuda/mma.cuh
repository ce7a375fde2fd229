// Warp-level tensor-core primitives (sm_80+): the one place that holds inline PTX.
// Kernels call these names; the CPU emulator (bench/gpu/emulate/emu_mma.h) provides the
// same names with the layouts below, so fragment indexing is checked without a GPU.
//
// mma_16816<T>: D (16x8, f32) += A (16x16, T) * B (16x8, T), T = __half or __nv_bfloat16,
// i.e. mma.sync.aligned.m16n8k16.row.col.f32.T.T.f32. With g = lane / 4, t = lane % 4:
//   A: a[0] = A[g][2t..2t+1]  a[1] = A[g+8][2t..2t+1]  a[2] = A[g][2t+8..]  a[3] = A[g+8][2t+8..]
//   B: b[0] = B[2t..2t+1][g]  b[1] = B[2t+8..2t+9][g]          (two k-consecutive halves)
//   C: c[0..1] = C[g][2t..2t+1]  c[2..3] = C[g+8][2t..2t+1]
// (each uint32 holds two 16-bit values, the lower-indexed one in the low half).
//
// ldmatrix_x4 / _x2 (.trans): lanes 8i..8i+7 give the row addresses of 8x8 matrix i (16-bit
// elements, 16-byte aligned rows in shared memory); register i of lane l receives
// M_i[l/4][2(l%4)..+1], or with .trans M_i[2(l%4)][l/4] and M_i[2(l%4)+1][l/4]. So ldmatrix_x4
// of a row-major 16x16 tile (lanes 0-15 rows 0-15 at column 0, lanes 16-31 rows 0-15 at
// column 8) is exactly an A fragment; of a row-major (n, k) tile it gives B fragments of
// two n-blocks; .trans of a row-major (k, n) tile gives B fragments.
//
// cp_async_16: 16 bytes global -> shared without registers (zero-filled when !valid; src
// must still be a mapped address then), completed by cp_async_wait<N> (at most N of the
// committed groups still in flight) followed by a barrier.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace tformer::cuda::mma {

template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "f16 or bf16 inputs");
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(row)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(row)));
}

// Lanes 0-15 give the addresses (the others' are ignored but must be valid shared ones).
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_address(row)));
}

__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_address(row)));
}

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");  // no shared read moves above it
}

// Two floats rounded to T (round to nearest even), packed low/high into one register.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

}  // namespace tformer::cuda::mma
