// The helper table of this instruction-set build (see cpu_kernels.h); the ops register
// themselves in their own files.
#include "../cpu_kernels.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

// The medium-row GEMM and the rows up to which it beats OpenBLAS: with AVX-512 up to 128
// rows (192 for the output projection); the AVX2 build, at half the vector width, only
// matched OpenBLAS's AVX-512 kernels up to 32 rows on the same machine (bench_gemm.py).
#if defined(__AVX512F__)
#define TFORMER_GEMM_MEDIUM_A &gemm_medium_a, 128
#elif defined(__AVX2__) && defined(__FMA__)
#define TFORMER_GEMM_MEDIUM_A &gemm_medium_a, 32
#else
#define TFORMER_GEMM_MEDIUM_A nullptr, 0  // OpenBLAS does these (gemm.cpp)
#endif

const KernelTable table = {TFORMER_CPU_STR(TFORMER_CPU_ISA), &row_max, &logsumexp, &exp_shifted, &gemm_short_a,
                           TFORMER_GEMM_MEDIUM_A};

}  // namespace tformer::cpu::TFORMER_CPU_ISA
