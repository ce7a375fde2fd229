#include "kv_pool.h"

#include <stdexcept>
#include <string>

#include "tformer/errors.h"
#include "tformer/ops.h"

namespace tformer::decoding {

KvPool::KvPool(const TransformerConfig& cfg, DType dtype, Device device, int64_t num_blocks, int64_t block_size)
    : block_size_(block_size) {
  if (block_size < 1) throw_value_error("block_size must be >= 1, got ", block_size);
  if (num_blocks < 1 || num_blocks > INT32_MAX) throw_value_error("the KV pool needs 1 to 2^31-1 blocks, got ", num_blocks);
  const int64_t width = 2 * cfg.attention_width(cfg.decoder_heads);
  for (int64_t i = 0; i < cfg.decoder_layers; ++i) {
    layers_.push_back(Tensor::empty({num_blocks, block_size, width}, dtype, device));
    layer_rows_.push_back(layers_.back().reshape({num_blocks * block_size, width}));
  }
  refs_.assign(static_cast<size_t>(num_blocks), 0);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int64_t KvPool::block_bytes(const TransformerConfig& cfg, DType dtype, int64_t block_size) {
  return cfg.decoder_layers * block_size * 2 * cfg.attention_width(cfg.decoder_heads) *
         static_cast<int64_t>(dtype_size(dtype));
}

int32_t KvPool::allocate() {
  if (free_.empty()) throw std::logic_error("KV pool exhausted although the scheduler reserved the blocks");
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[static_cast<size_t>(b)] = 1;
  return b;
}

void KvPool::retain(int32_t block) { ++refs_[static_cast<size_t>(block)]; }

void KvPool::release(int32_t block) {
  int32_t& r = refs_[static_cast<size_t>(block)];
  if (r <= 0) throw std::logic_error("KV pool: block " + std::to_string(block) + " released more often than held");
  if (--r == 0) free_.push_back(block);
}

void KvPool::copy_block(int32_t dst, int32_t src) {
  for (Tensor& t : layers_) {
    const int64_t n = t.numel() / t.dim(0);
    ops::copy_strided(t, dst * n, n, t, src * n, n, 1, n);
  }
}

}  // namespace tformer::decoding
