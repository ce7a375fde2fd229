// The kernel table of this instruction-set build (see cpu_kernels.h).
#include "../cpu_kernels.h"

#define TFORMER_STR2(x) #x
#define TFORMER_STR(x) TFORMER_STR2(x)

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

const KernelTable table = {TFORMER_STR(TFORMER_CPU_ISA), &bias_act, &layer_norm, &embedding, &attention,
                           &gated_act, &row_max, &logsumexp, &exp_shifted, &gemm_short_a, TFORMER_GEMM_MEDIUM_A,
                           &layer_norm_backward, &bias_act_backward, &gated_act_backward, &sum_rows,
                           &attention_backward,
                           &embedding_backward, &cross_entropy, &dropout, &adamw, &sum_squares};

}  // namespace tformer::cpu::TFORMER_CPU_ISA
