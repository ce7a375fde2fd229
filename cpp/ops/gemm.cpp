// Matrix products through OpenBLAS (the scipy-openblas32 build numpy uses).
#include <cblas.h>

#include <climits>

#include "cpu_kernels.h"
#include "tformer/errors.h"

namespace tformer::cpu {

void gemm(const GemmParams& p) {
  if (p.dtype != DType::f32)
    throw_type_error("cpu gemm supports float32 only, got ", dtype_name(p.dtype));
  if (p.m > INT_MAX || p.n > INT_MAX || p.k > INT_MAX)
    throw_value_error("cpu gemm: dimensions (", p.m, ", ", p.n, ", ", p.k, ") exceed the BLAS int range");
  if (p.m == 0 || p.n == 0) return;
  scipy_cblas_sgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans,
                    p.trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(p.m),
                    static_cast<int>(p.n), static_cast<int>(p.k), p.alpha,
                    static_cast<const float*>(p.a), static_cast<int>(p.lda),
                    static_cast<const float*>(p.b), static_cast<int>(p.ldb), p.beta,
                    static_cast<float*>(p.c), static_cast<int>(p.ldc));
}

}  // namespace tformer::cpu
