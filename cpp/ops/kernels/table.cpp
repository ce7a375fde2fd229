// The kernel table of this instruction-set build (see cpu_kernels.h).
#include "../cpu_kernels.h"

#define TFORMER_STR2(x) #x
#define TFORMER_STR(x) TFORMER_STR2(x)

namespace tformer::cpu::TFORMER_CPU_ISA {

const KernelTable table = {TFORMER_STR(TFORMER_CPU_ISA), &bias_act, &layer_norm, &embedding, &attention,
                           &row_max, &logsumexp, &exp_shifted, &gemm_short_a,
                           &layer_norm_backward, &activation_backward, &sum_rows, &attention_backward,
                           &embedding_backward, &cross_entropy, &dropout, &adamw, &sum_squares};

}  // namespace tformer::cpu::TFORMER_CPU_ISA
