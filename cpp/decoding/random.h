// Counter-based random numbers for sampling: the draw for (seed, source, step, k) is a
// pure function of those four numbers, so results do not depend on threads, batch
// composition or call order, and a seed reproduces them exactly.
#pragma once

#include <cstdint>

namespace tformer::decoding {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 53 random bits.
inline double uniform01(uint64_t seed, uint64_t source, uint64_t step, uint64_t k) {
  const uint64_t h = splitmix64(splitmix64(splitmix64(seed ^ 0x5DEECE66Dull) ^ source) ^ (step * 0x100000001B3ull + k));
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace tformer::decoding
