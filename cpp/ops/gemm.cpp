// Matrix products through OpenBLAS (the scipy-openblas32 build numpy uses).
//
// OpenBLAS runs single-threaded here and our OpenMP pool splits each product into
// one slice of C per thread. Two pools (OpenMP's for our kernels, OpenBLAS's for
// GEMMs) on the same cores spin against each other between calls; measured on the
// opus-mt-sized encoder this cost 1.9x (314 ms vs 167 ms with one pool).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "cpu_kernels.h"
#include "tformer/ops/gemm.h"
#include "tformer/errors.h"

namespace tformer::cpu {
namespace {

void sgemm(const GemmParams& p, int64_t m, int64_t n, const float* a, const float* b, float* c) {
  scipy_cblas_sgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans, p.trans_b ? CblasTrans : CblasNoTrans,
                    static_cast<int>(m), static_cast<int>(n), static_cast<int>(p.k), p.alpha, a,
                    static_cast<int>(p.lda), b, static_cast<int>(p.ldb), p.beta, c, static_cast<int>(p.ldc));
}

// TFORMER_ROWS_GEMM_MAX_ROWS lowers the row limit of the decode-step kernel, for measurements
// against OpenBLAS only (bench/bench_gemm.py): below kRowsGemmMaxRows the engine relies on
// its row invariance. Read once.
int64_t rows_gemm_max_rows() {
  const char* env = std::getenv("TFORMER_ROWS_GEMM_MAX_ROWS");
  return env ? std::min<int64_t>(std::atoll(env), kRowsGemmMaxRows) : kRowsGemmMaxRows;
}

}  // namespace

void gemm(const GemmParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu gemm supports float32 only, got ", dtype_name(p.dtype));
  if (p.m > INT_MAX || p.n > INT_MAX || p.k > INT_MAX)
    throw_value_error("cpu gemm: dimensions (", p.m, ", ", p.n, ", ", p.k, ") exceed the BLAS int range");
  if (p.m == 0 || p.n == 0) return;
  const float* a = static_cast<const float*>(p.a);
  const float* b = static_cast<const float*>(p.b);
  float* c = static_cast<float*>(p.c);
  // Decode steps multiply a few rows by a weight matrix (trans_b): gemm_rows reads the
  // weights in place, where OpenBLAS would pack all of them on every call, and rounds each
  // row the same whatever rows share the call (kernels/gemm_rows.cpp).
  static const int64_t rows_max = rows_gemm_max_rows();
  if (!p.trans_a && p.trans_b && p.m <= rows_max) {
    kernels().gemm_rows(p);
    return;
  }
  const int threads = omp_get_max_threads();
  const double flops = 2.0 * p.m * p.n * p.k;
  if (threads == 1 || flops < 2e6) {
    sgemm(p, p.m, p.n, a, b, c);
    return;
  }
  // Split the longer side of C; slices are multiples of 16 rows / 64 columns so each
  // thread's product still runs OpenBLAS's full-width micro-kernels.
  const bool by_rows = p.m >= p.n;
  const int64_t extent = by_rows ? p.m : p.n;
  const int64_t align = by_rows ? 16 : 64;
  const int64_t chunk = std::max<int64_t>(align, (extent + threads - 1) / threads + align - 1) / align * align;
  const int64_t parts = (extent + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(std::min<int64_t>(parts, threads)))
  for (int64_t part = 0; part < parts; ++part) {
    const int64_t lo = part * chunk;
    const int64_t len = std::min(chunk, extent - lo);
    if (by_rows) {
      const float* a_rows = p.trans_a ? a + lo : a + lo * p.lda;
      sgemm(p, len, p.n, a_rows, b, c + lo * p.ldc);
    } else {
      const float* b_cols = p.trans_b ? b + lo * p.ldb : b + lo;
      sgemm(p, p.m, len, a, b_cols, c + lo);
    }
  }
}

TFORMER_CPU_OP(gemm);

}  // namespace tformer::cpu

// For tests/ops/test_gemm_kernels.py (through ctypes): the CPU gemm with explicit leading
// dimensions, which the NumPy-facing ops.gemm (always contiguous) never passes. Returns 0,
// or 1 when the gemm threw.
extern "C" __attribute__((visibility("default"))) int tformer_test_cpu_sgemm(
    int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
    const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  tformer::GemmParams p;
  p.trans_a = trans_a != 0;
  p.trans_b = trans_b != 0;
  p.m = m, p.n = n, p.k = k;
  p.alpha = alpha, p.beta = beta;
  p.a = a, p.lda = lda, p.b = b, p.ldb = ldb, p.c = c, p.ldc = ldc;
  try {
    tformer::cpu::gemm(p);
  } catch (...) {
    return 1;
  }
  return 0;
}
