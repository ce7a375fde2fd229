// Picks the widest kernel build this CPU supports (see cpu_kernels.h).
#include <cstdlib>
#include <cstring>

#include "cpu_kernels.h"

namespace tformer::cpu {
namespace {

const KernelTable& select() {
#if defined(__x86_64__)
  // TFORMER_CPU_ISA=base|avx2|avx512 caps the choice (for tests and comparisons).
  const char* cap = std::getenv("TFORMER_CPU_ISA");
  const bool allow512 = !cap || std::strcmp(cap, "avx512") == 0;
  const bool allow2 = allow512 || (cap && std::strcmp(cap, "avx2") == 0);
  __builtin_cpu_init();
  if (allow512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return avx512::table;
  if (allow2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return avx2::table;
#endif
  return base::table;
}

}  // namespace

const KernelTable& kernels() {
  static const KernelTable& table = select();
  return table;
}

}  // namespace tformer::cpu
