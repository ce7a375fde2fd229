// Op family rows: strided 2-D copies and the in-place row gather of beam search.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>
#include <vector>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// In place: row r of `data` receives what row src_rows[r] held before the call
// (src_rows may repeat and need not be a permutation: beam search picks parents).
// src_rows lives in host memory. Rows are row_stride_bytes apart; the first
// bytes_per_row bytes of each row move.
struct GatherRowsParams {
  static constexpr char op_name[] = "gather_rows";
  void* data = nullptr;
  int64_t num_rows = 0;
  int64_t row_stride_bytes = 0;
  int64_t bytes_per_row = 0;
  const int32_t* src_rows = nullptr;
};

// dst row r = src row r (bytes_per_row bytes each), both on the backend's device.
struct Copy2dParams {
  static constexpr char op_name[] = "copy_2d";
  void* dst = nullptr;
  int64_t dst_stride_bytes = 0;
  const void* src = nullptr;
  int64_t src_stride_bytes = 0;
  int64_t rows = 0;
  int64_t bytes_per_row = 0;
};

// dst row dst_rows[r] (a row index into dst) = src row r, for r < rows; bytes_per_row bytes
// each; dst_rows (int32, device memory) are distinct. The engine writes each decode row's new
// K/V into its slot of the paged pool (block * block_size + position % block_size).
struct ScatterRowsParams {
  static constexpr char op_name[] = "scatter_rows";
  void* dst = nullptr;
  int64_t dst_stride_bytes = 0;
  int64_t dst_num_rows = 0;  // for bounds checks where the kernel can make them
  const void* src = nullptr;
  int64_t src_stride_bytes = 0;
  int64_t rows = 0;
  int64_t bytes_per_row = 0;
  const int32_t* dst_rows = nullptr;
};

namespace ops {

// dst[r, :cols] = src[r, :cols] for the first `rows` rows of two 2-D tensors (any widths).
void copy_rows(Tensor& dst, const Tensor& src, int64_t rows, int64_t cols);

// Strided block copy within one device: dst[dst_offset + r * dst_stride + c] =
// src[src_offset + r * src_stride + c] for r < rows, c < cols (offsets and strides in elements).
void copy_strided(Tensor& dst, int64_t dst_offset, int64_t dst_stride, const Tensor& src, int64_t src_offset,
                  int64_t src_stride, int64_t rows, int64_t cols);

// In place along axis 0: row r of t receives old row src_rows[r] (host indices).
void gather_rows(Tensor& t, const std::vector<int32_t>& src_rows, int64_t cols_to_move = -1);

// dst (num_rows, ...) viewed as 2-D rows: dst[dst_rows[r], dst_col : dst_col + cols] =
// src[r, src_col : src_col + cols] for r < dst_rows.numel(). dst_rows: int32 tensor on dst's
// device. src is 2-D or 3-D (rows, 1, width), same dtype and device.
void scatter_rows(Tensor& dst, int64_t dst_col, const Tensor& dst_rows, const Tensor& src, int64_t src_col,
                  int64_t cols);

}  // namespace ops

}  // namespace tformer
