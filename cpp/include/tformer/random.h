// Counter-based random numbers: each draw is a pure function of its key and counter,
// so results do not depend on threads, batch composition or call order, and a seed
// reproduces them exactly.
//   - uniform01: sampling in decoding, keyed by (seed, source, step, k).
//   - dropout_draw: training dropout's mask (backend.h, DropoutParams), keyed by (seed,
//     element index); the CPU kernel (cpp/ops/kernels/dropout.cpp) and the CUDA kernel
//     (cuda/dropout.cu) draw the same numbers, so a mask is the same on both.
// Host and device code: nvcc compiles these functions for both sides. A host compiler
// gives them internal linkage: the CPU kernels include this header in one translation unit
// per ISA (built with different -m flags), and a shared out-of-line copy of an inline
// function could be the AVX-512 one.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TFORMER_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TFORMER_HOST_DEVICE static inline
#endif

namespace tformer::rng {

constexpr uint64_t kGolden64 = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio, SplitMix64's step

// SplitMix64 (Steele, Lea & Flood 2014): one step of the counter, then the output mix.
TFORMER_HOST_DEVICE uint64_t splitmix64(uint64_t x) {
  x += kGolden64;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 53 random bits.
TFORMER_HOST_DEVICE double uniform01(uint64_t seed, uint64_t source, uint64_t step, uint64_t k) {
  const uint64_t h = splitmix64(splitmix64(splitmix64(seed ^ 0x5DEECE66Dull) ^ source) ^ (step * 0x100000001B3ull + k));
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

// Dropout's key for a seed: computed once per call, then dropout_draw per element.
TFORMER_HOST_DEVICE uint64_t dropout_key(uint64_t seed) { return splitmix64(seed); }

// Dropout's uniform draw for element `index` (= offset + i): the top 24 bits of
// splitmix64(key + index * golden) over 2^24, exact in float. Element i is kept when
// the draw is >= p.
TFORMER_HOST_DEVICE float dropout_draw(uint64_t key, uint64_t index) {
  const uint64_t h = splitmix64(key + index * kGolden64);
  return static_cast<float>(static_cast<int32_t>(h >> 40)) * (1.0f / 16777216.0f);
}

}  // namespace tformer::rng
