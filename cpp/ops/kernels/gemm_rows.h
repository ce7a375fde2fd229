// The two kernels behind gemm_rows (C = alpha * A @ W^T + beta * C, W (n, k) row-major, at
// most kRowsGemmMaxRows rows of A), and THE ARITHMETIC they share, which makes the GEMM
// ROW-INVARIANT (a row of C has the same bits whatever the other rows, m, and the thread
// count; the in-flight engine relies on it):
//
//   acc = 0;  for kk in 0 .. k-1:  acc = fma(A[i, kk], W[j, kk], acc)   (in this order)
//   C[i, j] = alpha * acc            (beta == 0: C is not read)
//   C[i, j] = alpha * acc + beta * C[i, j]   (a multiply, a multiply, an add)
//
// The files are compiled with -ffp-contract=off, so the epilogue is never fused. Where an
// element sits in a vector (a row lane or a column lane) changes nothing of this.
#pragma once

#include "../cpu_kernels.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

// Rows of A in vector lanes (A packed k-major once per call), weights broadcast from W in
// place: fast from ~8 rows up (gemm_rows_packed.cpp).
void gemm_rows_packed(const GemmParams& p);

#if defined(__AVX2__) && defined(__FMA__)
// Columns of C in vector lanes, W read in place and transposed in registers, A broadcast:
// fast for a few rows, at most kNarrowMaxRows (gemm_rows_narrow.cpp).
constexpr int64_t kNarrowMaxRows = 8;
void gemm_rows_narrow(const GemmParams& p);
#endif

}  // namespace tformer::cpu::TFORMER_CPU_ISA
