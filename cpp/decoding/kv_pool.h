// The paged K/V memory of decoding: a pool of blocks of `block_size` positions. One block id
// spans every decoder layer (per layer a tensor (num_blocks, block_size, 2A): K in columns
// [0, A), V in [A, 2A)), so a row's state is one list of block ids. Self-attention caches and
// cross-attention K/V both live here. Blocks are refcounted: beams share their common full
// prefix blocks, and a block returns to the free list when its last reader drops it.
#pragma once

#include <cstdint>
#include <vector>

#include "tformer/config.h"
#include "tformer/tensor.h"

namespace tformer::decoding {

class KvPool {
 public:
  KvPool(const TransformerConfig& cfg, DType dtype, Device device, int64_t num_blocks, int64_t block_size);

  // Bytes one block takes over all layers.
  static int64_t block_bytes(const TransformerConfig& cfg, DType dtype, int64_t block_size);

  int64_t num_blocks() const { return static_cast<int64_t>(refs_.size()); }
  int64_t block_size() const { return block_size_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_blocks() const { return num_blocks() - free_blocks(); }
  // Layer i's pool, (num_blocks, block_size, 2A), and the same memory as rows
  // (num_blocks * block_size, 2A) for scatter_rows.
  Tensor& layer(int64_t i) { return layers_[static_cast<size_t>(i)]; }
  Tensor& layer_rows(int64_t i) { return layer_rows_[static_cast<size_t>(i)]; }

  // A fresh block (refcount 1). The caller reserved it (the scheduler admits a request only
  // when its worst case fits), so running out is a bug: std::logic_error.
  int32_t allocate();
  void retain(int32_t block);
  void release(int32_t block);
  int32_t refs(int32_t block) const { return refs_[static_cast<size_t>(block)]; }
  // Copies block src's contents to block dst in every layer (copy-on-write of a shared block).
  void copy_block(int32_t dst, int32_t src);

 private:
  int64_t block_size_;
  std::vector<Tensor> layers_, layer_rows_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // a stack: recently freed blocks are reused first (warm in cache)
};

}  // namespace tformer::decoding
