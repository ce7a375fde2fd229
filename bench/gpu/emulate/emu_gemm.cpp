// cublasGemmEx_64 on the host, for the emulated library (emu_cublas.h): column-major
// C(m, n) = alpha * op(A) op(B) + beta * C with A, B, C of one float type (f32, f16,
// bf16), or f16 / bf16 A and B with an f32 C, and fp32 accumulation, as cuBLAS with
// CUBLAS_COMPUTE_32F. op(A) and op(B) are
// first packed into fp32 rows along k (the half types widen exactly), then a 4 x 4
// register tile of C runs over k with 16 independent sums, over 64-column panels of B
// so that a panel stays in cache while every row of A passes over it.
#include <algorithm>
#include <cstring>
#include <vector>

#include "emu_cublas.h"

namespace {

float load(const void* base, int64_t i, cudaDataType_t t) {
  switch (t) {
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(base)[i]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

void store(void* base, int64_t i, cudaDataType_t t, float v) {
  switch (t) {
    case CUDA_R_16F: static_cast<__half*>(base)[i] = __float2half_rn(v); break;
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v); break;
    default: static_cast<float*>(base)[i] = v; break;
  }
}

// rows x k fp32, row r = op(X) row r (trans: X stored (k, rows) column-major, i.e.
// element (r, p) at r * ld + p; else at r + p * ld).
std::vector<float> pack(const void* x, cudaDataType_t t, bool trans, int64_t rows, int64_t k, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t p = 0; p < k; ++p) out[r * k + p] = load(x, trans ? r * ld + p : r + p * ld, t);
  return out;
}

constexpr int64_t kTile = 4, kPanel = 64;

}  // namespace

cublasStatus_t cublasGemmEx_64(cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb, int64_t m,
                               int64_t n, int64_t k, const void* alpha, const void* A, cudaDataType_t Atype,
                               int64_t lda, const void* B, cudaDataType_t Btype, int64_t ldb, const void* beta, void* C,
                               cudaDataType_t Ctype, int64_t ldc, cublasComputeType_t computeType, cublasGemmAlgo_t) {
  const bool ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
  if (m < 0 || n < 0 || k < 0 || lda < std::max<int64_t>(1, ta ? k : m) || ldb < std::max<int64_t>(1, tb ? n : k) ||
      ldc < std::max<int64_t>(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  // cuBLAS's combinations with 32F compute that gemm.cu uses: A, B and C of one type, or
  // f16 / bf16 A and B with an f32 C (mixed-precision weight gradients).
  const bool half_in = Atype == CUDA_R_16F || Atype == CUDA_R_16BF;
  if (Atype != Btype || computeType != CUBLAS_COMPUTE_32F || (Atype != CUDA_R_32F && !half_in) ||
      (Ctype != Atype && !(half_in && Ctype == CUDA_R_32F)))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  // op(A) is (m, k): column-major A untransposed has element (i, p) at i + p * lda.
  const std::vector<float> a = pack(A, Atype, ta, m, k, lda);
  // op(B)^T is (n, k): op(B) (p, j) is B[p + j * ldb] untransposed, B[j + p * ldb] transposed.
  const std::vector<float> b = pack(B, Btype, !tb, n, k, ldb);
  auto finish = [&](int64_t i, int64_t j, float acc) {
    const int64_t at = i + j * ldc;
    const float v = al * acc;
    store(C, at, Ctype, be == 0.0f ? v : v + be * load(C, at, Ctype));
  };
  for (int64_t j0 = 0; j0 < n; j0 += kPanel) {
    const int64_t j1 = std::min(n, j0 + kPanel);
    for (int64_t i = 0; i < m; i += kTile) {
      const int64_t ti = std::min(kTile, m - i);
      for (int64_t j = j0; j < j1; j += kTile) {
        const int64_t tj = std::min(kTile, j1 - j);
        float acc[kTile][kTile] = {};
        if (ti == kTile && tj == kTile) {
          const float* ar[kTile] = {&a[i * k], &a[(i + 1) * k], &a[(i + 2) * k], &a[(i + 3) * k]};
          const float* br[kTile] = {&b[j * k], &b[(j + 1) * k], &b[(j + 2) * k], &b[(j + 3) * k]};
          for (int64_t p = 0; p < k; ++p) {
            const float a0 = ar[0][p], a1 = ar[1][p], a2 = ar[2][p], a3 = ar[3][p];
            for (int c = 0; c < kTile; ++c) {
              const float bv = br[c][p];
              acc[0][c] += a0 * bv, acc[1][c] += a1 * bv, acc[2][c] += a2 * bv, acc[3][c] += a3 * bv;
            }
          }
        } else {
          for (int64_t r = 0; r < ti; ++r)
            for (int64_t c = 0; c < tj; ++c) {
              const float* ar = &a[(i + r) * k];
              const float* br = &b[(j + c) * k];
              float s = 0.0f;
              for (int64_t p = 0; p < k; ++p) s += ar[p] * br[p];
              acc[r][c] = s;
            }
        }
        for (int64_t r = 0; r < ti; ++r)
          for (int64_t c = 0; c < tj; ++c) finish(i + r, j + c, acc[r][c]);
      }
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}
