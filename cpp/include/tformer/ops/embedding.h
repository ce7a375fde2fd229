// Op family embedding: embedding lookup (token table and positions), forward and backward.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// out[r, :] = table[ids[r], :] * scale + positions[position_ids[r], :]
// (positions optional). Ids are checked on the host before the call.
// An int8 table (int8 models, tformer/ops/int8.h): table_scale is given, the table is int8
// and its row v reads as float(table[v][c]) * table_scale[v]; out and positions are dtype.
// The row is computed as (float(q) * table_scale[v]) * scale, then + positions (CPU only).
struct EmbeddingParams {
  static constexpr char op_name[] = "embedding";
  DType dtype = DType::f32;  // of table (unless table_scale), positions and out
  int64_t rows = 0, dim = 0;
  float scale = 1.0f;
  void* out = nullptr;
  const int32_t* ids = nullptr;           // (rows)
  const void* table = nullptr;            // (vocab, dim)
  const int32_t* position_ids = nullptr;  // (rows) or null
  const void* positions = nullptr;        // (max_positions, dim) or null
  const float* table_scale = nullptr;     // (vocab): the table is int8; null: it is dtype
};

// Backward of the embedding lookup: dtable[ids[r], :] += scale * dout[r, :] and
// dpositions[position_ids[r], :] += dout[r, :] (dtable, dpositions optional), skipping
// the rows whose id is skip_id. Ids are checked on the host before the call.
// grad_f32: dtable and dpositions are float32 whatever dtype (of dout) is (mixed
// precision; CUDA only).
struct EmbeddingBackwardParams {
  static constexpr char op_name[] = "embedding_backward";
  DType dtype = DType::f32;
  bool grad_f32 = false;
  int64_t rows = 0, dim = 0;
  float scale = 1.0f;
  int32_t skip_id = -1;
  void* dtable = nullptr;                 // (vocab, dim) or null
  void* dpositions = nullptr;             // (max_positions, dim) or null
  const void* dout = nullptr;             // (rows, dim)
  const int32_t* ids = nullptr;           // (rows)
  const int32_t* position_ids = nullptr;  // (rows), with dpositions
};

namespace ops {

// out (..., dim) = table[ids] * scale + positions[position_ids]; ids int32 on the same device.
// table_scale (vocab) float32: the table is int8 (an int8 model's), out and positions float32.
void embedding(Tensor& out, const Tensor& ids, const Tensor& table, float scale,
               const Tensor* position_ids = nullptr, const Tensor* positions = nullptr,
               const Tensor* table_scale = nullptr);

// out = table[ids] * scale + positions[position_ids] backward:
//   dtable[ids[r]] += scale * dout[r];  dpositions[position_ids[r]] += dout[r] (when given).
// Rows whose id equals skip_id (e.g. the pad id, -1: none) contribute nothing.
void embedding_backward(Tensor* dtable, Tensor* dpositions, const Tensor& dout, const Tensor& ids,
                        const Tensor* position_ids, float scale, int32_t skip_id = -1);

}  // namespace ops

}  // namespace tformer
