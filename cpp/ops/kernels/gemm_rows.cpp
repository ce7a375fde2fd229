// gemm_rows: C (m, n) = alpha * A (m, k) @ W^T + beta * C for up to 256 rows of A (decode
// steps, short encoder inputs) and W (n, k) row-major (a Linear weight), read in place:
// OpenBLAS would pack all of W on every call, moving the weights through memory twice.
//
// ROW-INVARIANT (gemm_rows.h): both kernels compute every element with the same fma chain
// over k and the same epilogue, so the row count may pick the kernel freely.
#include <cstdlib>

#include "gemm_rows.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

#if defined(__AVX2__) && defined(__FMA__)
namespace {

// Up to this many rows go to the narrow kernel (measured: bench/bench_gemm.py);
// TFORMER_ROWS_GEMM_NARROW_ROWS moves the switch, for measurements. Read once.
int64_t narrow_rows() {
  const char* env = std::getenv("TFORMER_ROWS_GEMM_NARROW_ROWS");
  const int64_t rows = env ? std::atoll(env) : kNarrowMaxRows;
  return rows < 0 ? 0 : rows > kNarrowMaxRows ? kNarrowMaxRows : rows;
}

}  // namespace

void gemm_rows(const GemmParams& p) {
  static const int64_t narrow = narrow_rows();
  if (p.m <= narrow) gemm_rows_narrow(p);
  else gemm_rows_packed(p);
}
#else
void gemm_rows(const GemmParams& p) { gemm_rows_packed(p); }
#endif

}  // namespace tformer::cpu::TFORMER_CPU_ISA
