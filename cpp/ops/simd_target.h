// Hot CPU loops are compiled twice, for AVX2+FMA and for baseline x86-64, and the
// right copy is picked at load time (GCC function multiversioning), so one binary
// runs everywhere and uses AVX2 where it exists. OpenMP outlines parallel regions
// before cloning, so put the attribute on the per-block worker, not on the function
// that holds the `omp parallel` region.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TFORMER_SIMD_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define TFORMER_SIMD_CLONES
#endif
