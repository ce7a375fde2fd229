// Reductions for training: column sums (bias gradients) and the sum of squares
// (gradient norms), both deterministic: the order of additions depends only on the
// sizes, never on the thread count.
#include <algorithm>
#include <vector>

#include "../cpu_kernels.h"
#include "tformer/ops/reduce.h"
#include "tformer/errors.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

// Column blocks, each summing all rows in row order: no partials, no races, and the
// same bits whatever the thread count.
void sum_rows(const SumRowsParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu sum_rows supports float32 only, got ", dtype_name(p.dtype));
  constexpr int64_t kBlock = 64;
  const float* x = static_cast<const float*>(p.x);
  float* out = static_cast<float*>(p.out);
  const int64_t blocks = (p.cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (p.rows * p.cols > 16384 && blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kBlock, nc = std::min(kBlock, p.cols - c0);
    float acc[kBlock] = {};
    for (int64_t r = 0; r < p.rows; ++r) {
      const float* xr = x + r * p.cols + c0;
#pragma omp simd
      for (int64_t c = 0; c < nc; ++c) acc[c] += xr[c];
    }
    for (int64_t c = 0; c < nc; ++c) out[c0 + c] += acc[c];
  }
}

// Fixed chunks, each summed in double by one thread (8 lanes of partial sums), then the
// chunk sums added in chunk order.
double sum_squares(const SumSquaresParams& p) {
  if (p.dtype != DType::f32) throw_type_error("cpu sum_squares supports float32 only, got ", dtype_name(p.dtype));
  constexpr int64_t kChunk = 1 << 16;
  const float* x = static_cast<const float*>(p.x);
  const int64_t chunks = (p.n + kChunk - 1) / kChunk;
  static thread_local std::vector<double> partial;
  partial.assign(static_cast<size_t>(chunks), 0.0);
  double* part = partial.data();
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t i0 = ch * kChunk, i1 = std::min(p.n, i0 + kChunk);
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = i0; i < i1; ++i) {
      const double v = x[i];
      acc += v * v;
    }
    part[ch] = acc;
  }
  double total = 0.0;
  for (int64_t ch = 0; ch < chunks; ++ch) total += part[ch];
  return total;
}

TFORMER_CPU_OP(sum_rows);
TFORMER_CPU_OP(sum_squares);

}  // namespace tformer::cpu::TFORMER_CPU_ISA
