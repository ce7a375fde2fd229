// The helper table of this instruction-set build (see cpu_kernels.h); the ops register
// themselves in their own files.
#include "../cpu_kernels.h"

namespace tformer::cpu::TFORMER_CPU_ISA {

const KernelTable table = {TFORMER_CPU_STR(TFORMER_CPU_ISA), &row_max, &logsumexp, &exp_shifted, &gemm_rows};

}  // namespace tformer::cpu::TFORMER_CPU_ISA
