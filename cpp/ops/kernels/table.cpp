// The kernel table of this instruction-set build (see cpu_kernels.h).
#include "../cpu_kernels.h"

#define TFORMER_STR2(x) #x
#define TFORMER_STR(x) TFORMER_STR2(x)

namespace tformer::cpu::TFORMER_CPU_ISA {

#if defined(__AVX2__) && defined(__FMA__)
#define TFORMER_GEMM_MEDIUM_A &gemm_medium_a
#else
#define TFORMER_GEMM_MEDIUM_A nullptr  // OpenBLAS does these (gemm.cpp)
#endif

const KernelTable table = {TFORMER_STR(TFORMER_CPU_ISA), &bias_act, &layer_norm, &embedding, &attention,
                           &row_max, &logsumexp, &exp_shifted, &gemm_short_a, TFORMER_GEMM_MEDIUM_A,
                           &layer_norm_backward, &activation_backward, &sum_rows, &attention_backward,
                           &embedding_backward, &cross_entropy, &dropout, &adamw, &sum_squares};

}  // namespace tformer::cpu::TFORMER_CPU_ISA
