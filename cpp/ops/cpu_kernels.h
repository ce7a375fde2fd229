// CPU implementations of the backend kernels (fp32). See backend.h for the contracts.
//
// The element-wise and attention kernels (kernels/*.cpp) are compiled once per
// instruction set (baseline x86-64, AVX2+FMA, AVX-512), each copy in its own
// namespace; `kernels()` picks the best copy this CPU runs, once, by CPUID. One
// binary thus runs everywhere and uses the wide vectors where they exist.
#pragma once

#include <string>

#include "tformer/backend.h"

namespace tformer::cpu {

struct KernelTable {
  const char* isa;
  void (*bias_act)(const BiasActParams&);
  void (*layer_norm)(const LayerNormParams&);
  void (*embedding)(const EmbeddingParams&);
  void (*attention)(const AttentionParams&);
  void (*gated_act)(const GatedActParams&);
  float (*row_max)(const float* x, int64_t n);
  float (*logsumexp)(const float* x, int64_t n);                 // -inf when every x is -inf
  float (*exp_shifted)(float* x, int64_t n, float shift);        // x = exp(x - shift); returns the sum
  void (*gemm_short_a)(const GemmParams&);  // !trans_a, trans_b, few rows of A (decode steps)
  void (*gemm_medium_a)(const GemmParams&);  // !trans_a, trans_b, 5..~128 rows; nullptr: none here
  int64_t gemm_medium_max_rows;               // where OpenBLAS wins again (measured, bench_gemm.py)
  // Training (see the training section of backend.h).
  void (*layer_norm_backward)(const LayerNormBackwardParams&);
  void (*bias_act_backward)(const BiasActBackwardParams&);
  void (*gated_act_backward)(const GatedActBackwardParams&);
  void (*sum_rows)(const SumRowsParams&);
  void (*attention_backward)(const AttentionBackwardParams&);
  void (*embedding_backward)(const EmbeddingBackwardParams&);
  void (*cross_entropy)(const CrossEntropyParams&);
  void (*dropout)(const DropoutParams&);
  void (*adamw)(const AdamWParams&);
  double (*sum_squares)(const SumSquaresParams&);
};

const KernelTable& kernels();
constexpr int64_t kMediumGemmMaxRows = 256;  // gemm_medium_a takes at most this many rows

#define TFORMER_DECLARE_CPU_KERNELS(isa_ns)            \
  namespace isa_ns {                                  \
  void bias_act(const BiasActParams& p);              \
  void layer_norm(const LayerNormParams& p);          \
  void embedding(const EmbeddingParams& p);           \
  void attention(const AttentionParams& p);           \
  void gated_act(const GatedActParams& p);            \
  float row_max(const float* x, int64_t n);           \
  float logsumexp(const float* x, int64_t n);         \
  float exp_shifted(float* x, int64_t n, float shift); \
  void gemm_short_a(const GemmParams& p);             \
  void gemm_medium_a(const GemmParams& p);            \
  void layer_norm_backward(const LayerNormBackwardParams& p); \
  void bias_act_backward(const BiasActBackwardParams& p); \
  void gated_act_backward(const GatedActBackwardParams& p); \
  void sum_rows(const SumRowsParams& p);              \
  void attention_backward(const AttentionBackwardParams& p); \
  void embedding_backward(const EmbeddingBackwardParams& p); \
  void cross_entropy(const CrossEntropyParams& p);    \
  void dropout(const DropoutParams& p);               \
  void adamw(const AdamWParams& p);                   \
  double sum_squares(const SumSquaresParams& p);      \
  extern const KernelTable table;                     \
  }

TFORMER_DECLARE_CPU_KERNELS(base)
#if defined(__x86_64__)
TFORMER_DECLARE_CPU_KERNELS(avx2)
TFORMER_DECLARE_CPU_KERNELS(avx512)
#endif

void gemm(const GemmParams& p);  // OpenBLAS picks its own kernels at run time
void cast(const CastParams& p);
void gather_rows(const GatherRowsParams& p);
void copy_2d(const Copy2dParams& p);

void set_num_threads(int n);
int get_num_threads();
std::string blas_info();

}  // namespace tformer::cpu
