// The CPU's op entries and its per-instruction-set kernel builds.
//
// The element-wise and attention kernels (kernels/*.cpp) are compiled once per
// instruction set (baseline x86-64, AVX2+FMA, AVX-512), each copy in its own
// namespace. Each op's kernel file registers its entry with one line,
// TFORMER_CPU_OP(layer_norm), in every build; the CPU backend's op table takes the
// entries of the best build this CPU runs, chosen once by CPUID (kernel_select.cpp,
// TFORMER_CPU_ISA). Files compiled once (gemm.cpp, rows.cpp, cast.cpp) register the
// same way, for every build. One binary thus runs everywhere and uses the wide vectors
// where they exist.
//
// KernelTable holds the helpers that are not ops (softmax pieces the decoders use, the
// decode-step GEMM gemm.cpp calls), per build.
#pragma once

#include <string>

#include "tformer/backend.h"
#include "tformer/ops/gemm.h"

namespace tformer::cpu {

struct KernelTable {
  const char* isa;
  float (*row_max)(const float* x, int64_t n);
  float (*logsumexp)(const float* x, int64_t n);                 // -inf when every x is -inf
  float (*exp_shifted)(float* x, int64_t n, float shift);        // x = exp(x - shift); returns the sum
  // !trans_a, trans_b, at most kRowsGemmMaxRows rows of A (decode steps): row-invariant,
  // a row of C has the same bits whatever the other rows and the thread count.
  void (*gemm_rows)(const GemmParams&);
};

const KernelTable& kernels();
constexpr int64_t kRowsGemmMaxRows = 256;  // gemm.cpp sends these to gemm_rows (the engine's max_rows)

#define TFORMER_DECLARE_CPU_KERNELS(isa_ns)            \
  namespace isa_ns {                                  \
  float row_max(const float* x, int64_t n);           \
  float logsumexp(const float* x, int64_t n);         \
  float exp_shifted(float* x, int64_t n, float shift); \
  void gemm_rows(const GemmParams& p);                \
  extern const KernelTable table;                     \
  }

TFORMER_DECLARE_CPU_KERNELS(base)
#if defined(__x86_64__)
TFORMER_DECLARE_CPU_KERNELS(avx2)
TFORMER_DECLARE_CPU_KERNELS(avx512)
#endif

// ---------------------------------------------------------------- op registration
// Both defined in cpu_backend.cpp, compiled for the baseline ISA: a registration line in
// an AVX-512 build calls only these (no inline code of a header is instantiated there
// that the linker could merge into the baseline build).

// Sizes the OpenMP pool for the calling thread (every CPU entry calls it first).
void init_threads();
// Records `entry` (an OpEntry of op `name`) for the kernel build `isa` ("base", "avx2",
// "avx512"; null: every build). Returns true (for the static initialiser).
bool register_op(const char* isa, const char* name, OpFn entry);
// The CPU backend's op table: the entries of the build kernels() chose.
const OpTable& op_table();

// The CPU entry of kernel F, a `Result F(const P&)`: the thread pool set up, then F.
template <auto F>
typename OpResult<typename OpParamsOf<decltype(F)>::type>::type entry(
    Backend&, const typename OpParamsOf<decltype(F)>::type& p, int) {
  init_threads();
  return F(p);
}

#define TFORMER_CPU_STR2(x) #x
#define TFORMER_CPU_STR(x) TFORMER_CPU_STR2(x)
#ifdef TFORMER_CPU_ISA
#define TFORMER_CPU_OP_BUILD TFORMER_CPU_STR(TFORMER_CPU_ISA)
#else
#define TFORMER_CPU_OP_BUILD nullptr
#endif

// One line per op, after its kernel, in the kernel's namespace: TFORMER_CPU_OP(layer_norm)
// registers this build's `void layer_norm(const LayerNormParams&)` as the CPU entry of
// LayerNormParams::op_name.
#define TFORMER_CPU_OP(fn)                                                                 \
  [[maybe_unused]] static const bool tformer_cpu_op_registered_##fn = ::tformer::cpu::register_op( \
      TFORMER_CPU_OP_BUILD, ::tformer::OpParamsOf<decltype(&fn)>::type::op_name,            \
      reinterpret_cast<::tformer::OpFn>(&::tformer::cpu::entry<&fn>))

void set_num_threads(int n);
int get_num_threads();
std::string blas_info();

}  // namespace tformer::cpu
