// Row movement on the device: strided copies (copy_2d), the in-place row gather that
// reorders the KV cache between beam-search steps (gather_rows), and the scatter of decode
// rows' new K/V into their slots of the paged pool (scatter_rows: one launch, the
// destination rows read from device memory, where the engine's step tables live).
//
// gather_rows: the rows that change (src_rows[r] != r) are first gathered into a
// temporary from the caching allocator, then scattered back: two passes of one kernel
// on the device's stream (each pass one launch per kMovesPerLaunch rows). Reading every
// source before writing any destination is what makes repeats and cycles safe. The row indices travel as kernel parameters
// (by value, up to kMovesPerLaunch per launch), so no index buffer has to be staged
// through pinned memory or kept alive until the copy has run.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "launch_util.h"
#include "ops.h"
#include "tformer/ops/rows.h"

namespace tformer::cuda {

namespace {

// Kernel parameters are limited to 4 KiB: 2 x 480 indices plus the fields below fit.
constexpr int kMovesPerLaunch = 480;
constexpr int kThreads = 256;

// Row dst_rows[m] of dst <- row src_rows[m] of src, for m < count; rows are `words`
// words of type W, row r at byte offset r * stride.
struct RowMoves {
  char* dst = nullptr;
  const char* src = nullptr;
  int64_t dst_stride = 0, src_stride = 0;
  int64_t words = 0;
  int32_t count = 0;
  int32_t dst_rows[kMovesPerLaunch];
  int32_t src_rows[kMovesPerLaunch];
};

}  // namespace

// ---------------------------------------------------------------- kernels

// blockIdx.y picks the move, blockIdx.x and the threads split the row.
// __grid_constant__: the index arrays are read in place from parameter memory,
// not copied to a local-memory frame.
template <typename W>
__global__ void __launch_bounds__(kThreads) move_rows_kernel(const __grid_constant__ RowMoves m) {
  for (int r = blockIdx.y; r < m.count; r += gridDim.y) {
    const W* src = reinterpret_cast<const W*>(m.src + int64_t(m.src_rows[r]) * m.src_stride);
    W* dst = reinterpret_cast<W*>(m.dst + int64_t(m.dst_rows[r]) * m.dst_stride);
    for (int64_t w = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; w < m.words;
         w += int64_t(gridDim.x) * blockDim.x)
      dst[w] = src[w];
  }
}

// Row dst_rows[r] of dst <- row r of src, r < rows; blockIdx.y (grid-stride) picks the
// row, blockIdx.x and the threads split it. A destination outside [0, dst_num_rows) is
// skipped (the core cannot read device indices to check them; a write there would
// corrupt memory).
template <typename W>
__global__ void __launch_bounds__(kThreads) scatter_rows_kernel(const ScatterRowsParams p, int64_t words) {
  for (int64_t r = blockIdx.y; r < p.rows; r += gridDim.y) {
    const int64_t d = p.dst_rows[r];
    if (d < 0 || d >= p.dst_num_rows) continue;
    const W* src = reinterpret_cast<const W*>(static_cast<const char*>(p.src) + r * p.src_stride_bytes);
    W* dst = reinterpret_cast<W*>(static_cast<char*>(p.dst) + d * p.dst_stride_bytes);
    for (int64_t w = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; w < words; w += int64_t(gridDim.x) * blockDim.x)
      dst[w] = src[w];
  }
}

// ---------------------------------------------------------------- launchers

namespace {

template <typename W>
void launch_move_rows(const RowMoves& m, cudaStream_t stream) {
  const int64_t x = std::min<int64_t>((m.words + kThreads - 1) / kThreads, 1024);
  const dim3 grid(static_cast<unsigned>(x), static_cast<unsigned>(m.count));
  move_rows_kernel<W><<<grid, kThreads, 0, stream>>>(m);
  TFORMER_CUDA_CHECK_LAUNCH("move_rows_kernel");
}

// Row dst_rows[i] of dst <- row src_rows[i] of src, i < n, in launches of at most
// kMovesPerLaunch rows. A null index array stands for i itself (the temporary's side).
// `word` (16, 4 or 1) divides both pointers, both strides and the row length.
void move_rows(RowMoves m, const int32_t* dst_rows, const int32_t* src_rows, int64_t n,
               int64_t bytes_per_row, int word, cudaStream_t stream) {
  m.words = bytes_per_row / word;
  for (int64_t first = 0; first < n; first += kMovesPerLaunch) {
    m.count = static_cast<int32_t>(std::min<int64_t>(n - first, kMovesPerLaunch));
    for (int32_t i = 0; i < m.count; ++i) {
      m.dst_rows[i] = dst_rows ? dst_rows[first + i] : static_cast<int32_t>(first + i);
      m.src_rows[i] = src_rows ? src_rows[first + i] : static_cast<int32_t>(first + i);
    }
    switch (word) {
      case 16: launch_move_rows<uint4>(m, stream); break;
      case 4: launch_move_rows<uint32_t>(m, stream); break;
      default: launch_move_rows<uint8_t>(m, stream); break;
    }
  }
}

}  // namespace

void gather_rows(const GatherRowsParams& p, CachingAllocator& allocator, cudaStream_t stream) {
  if (p.num_rows <= 0 || p.bytes_per_row <= 0) return;
  if (p.num_rows > INT32_MAX || (p.num_rows > 1 && p.row_stride_bytes < p.bytes_per_row)) {
    throw std::invalid_argument("cuda gather_rows: " + std::to_string(p.num_rows) + " rows of " +
                                std::to_string(p.bytes_per_row) + " bytes, " +
                                std::to_string(p.row_stride_bytes) +
                                " bytes apart: rows must not overlap, at most 2^31 - 1 of them");
  }
  // Host scratch reused across calls: no allocation per decoding step once warm.
  static thread_local std::vector<int32_t> dst_rows, src_rows;
  dst_rows.clear(), src_rows.clear();
  for (int64_t r = 0; r < p.num_rows; ++r) {
    const int32_t s = p.src_rows[r];
    if (s == r) continue;
    // The core checks indices too; out of range here would be a sticky device fault.
    if (s < 0 || s >= p.num_rows) {
      throw std::invalid_argument("cuda gather_rows: src_rows[" + std::to_string(r) + "] = " + std::to_string(s) +
                                  " is out of range [0, " + std::to_string(p.num_rows) + ")");
    }
    dst_rows.push_back(static_cast<int32_t>(r));
    src_rows.push_back(s);
  }
  const int64_t n = static_cast<int64_t>(dst_rows.size());
  if (n == 0) return;

  const uintptr_t alignment = reinterpret_cast<uintptr_t>(p.data) |
                              static_cast<uintptr_t>(p.row_stride_bytes) |
                              static_cast<uintptr_t>(p.bytes_per_row);
  const int word = alignment % 16 == 0 ? 16 : alignment % 4 == 0 ? 4 : 1;
  const int64_t pitch = (p.bytes_per_row + 15) / 16 * 16;  // of the temporary: any word fits
  ScopedBlock tmp(allocator, static_cast<size_t>(n * pitch));

  RowMoves gather;  // tmp row i <- data row src_rows[i]
  gather.dst = tmp.data(), gather.dst_stride = pitch;
  gather.src = static_cast<const char*>(p.data), gather.src_stride = p.row_stride_bytes;
  move_rows(gather, nullptr, src_rows.data(), n, p.bytes_per_row, word, stream);

  RowMoves scatter;  // data row dst_rows[i] <- tmp row i
  scatter.dst = static_cast<char*>(p.data), scatter.dst_stride = p.row_stride_bytes;
  scatter.src = tmp.data(), scatter.src_stride = pitch;
  move_rows(scatter, dst_rows.data(), nullptr, n, p.bytes_per_row, word, stream);
}

void copy_2d(const Copy2dParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.bytes_per_row <= 0) return;
  // cudaMemcpy2D wants pitch >= width even where a pitch is never used (one row).
  const int64_t dst_pitch = p.rows == 1 ? std::max(p.dst_stride_bytes, p.bytes_per_row) : p.dst_stride_bytes;
  const int64_t src_pitch = p.rows == 1 ? std::max(p.src_stride_bytes, p.bytes_per_row) : p.src_stride_bytes;
  if (dst_pitch < p.bytes_per_row || src_pitch < p.bytes_per_row) {
    throw std::invalid_argument("cuda copy_2d: rows of " + std::to_string(p.bytes_per_row) +
                                " bytes overlap (dst stride " + std::to_string(p.dst_stride_bytes) +
                                ", src stride " + std::to_string(p.src_stride_bytes) + " bytes)");
  }
  TFORMER_CUDA_CHECK(cudaMemcpy2DAsync(p.dst, static_cast<size_t>(dst_pitch), p.src,
                                       static_cast<size_t>(src_pitch), static_cast<size_t>(p.bytes_per_row),
                                       static_cast<size_t>(p.rows), cudaMemcpyDeviceToDevice, stream));
}

void scatter_rows(const ScatterRowsParams& p, cudaStream_t stream) {
  if (p.rows <= 0 || p.bytes_per_row <= 0) return;
  const uintptr_t alignment = reinterpret_cast<uintptr_t>(p.dst) | reinterpret_cast<uintptr_t>(p.src) |
                              static_cast<uintptr_t>(p.dst_stride_bytes) |
                              static_cast<uintptr_t>(p.src_stride_bytes) | static_cast<uintptr_t>(p.bytes_per_row);
  const int word = alignment % 16 == 0 ? 16 : alignment % 4 == 0 ? 4 : 1;
  const int64_t words = p.bytes_per_row / word;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((words + kThreads - 1) / kThreads, 1024)),
                  static_cast<unsigned>(std::min<int64_t>(p.rows, 65535)));
  switch (word) {
    case 16: scatter_rows_kernel<uint4><<<grid, kThreads, 0, stream>>>(p, words); break;
    case 4: scatter_rows_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(p, words); break;
    default: scatter_rows_kernel<uint8_t><<<grid, kThreads, 0, stream>>>(p, words); break;
  }
  TFORMER_CUDA_CHECK_LAUNCH("scatter_rows_kernel");
}

TFORMER_CUDA_OP(gather_rows);
TFORMER_CUDA_OP(scatter_rows);
TFORMER_CUDA_OP(copy_2d);

}  // namespace tformer::cuda
