// The grid of the elementwise kernels' grid-stride loops (one thread per element, each
// block `threads` wide): enough blocks to cover n, capped so that huge n loops instead.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tformer::cuda {

inline unsigned grid_stride_blocks(int64_t n, int threads) {
  return static_cast<unsigned>(std::min<int64_t>((n + threads - 1) / threads, 65535 * 4));
}

}  // namespace tformer::cuda
