#include "tformer/relative_position.h"

#include <cmath>
#include <cstdlib>

#include "tformer/ops.h"

namespace tformer {

int32_t relative_position_bucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                                 int64_t max_distance) {
  int64_t bucket = 0;
  int64_t n = num_buckets;
  int64_t distance;
  if (bidirectional) {
    n /= 2;
    if (relative_position > 0) bucket += n;
    distance = std::llabs(relative_position);
  } else {
    distance = relative_position < 0 ? -relative_position : 0;
  }
  const int64_t max_exact = n / 2;
  if (distance < max_exact) return static_cast<int32_t>(bucket + distance);
  // transformers: max_exact + (log(d.float() / max_exact) / math.log(max_distance / max_exact)
  // * (n - max_exact)).to(long): float32 arithmetic with the Python double divisor rounded to
  // float32, truncated toward zero, then capped at n - 1.
  const float ratio = static_cast<float>(distance) / static_cast<float>(max_exact);
  const float divisor =
      static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  const float scaled = std::log(ratio) / divisor * static_cast<float>(n - max_exact);
  int64_t large = max_exact + static_cast<int64_t>(scaled);
  if (large > n - 1) large = n - 1;
  return static_cast<int32_t>(bucket + large);
}

void relative_position_buckets(int32_t* out, int64_t first, int64_t count, bool bidirectional,
                               int64_t num_buckets, int64_t max_distance) {
  for (int64_t k = 0; k < count; ++k)
    out[k] = relative_position_bucket(first + k, bidirectional, num_buckets, max_distance);
}

Tensor relative_bias(const Tensor& table, int64_t first, int64_t span, bool bidirectional,
                     const TransformerConfig& cfg) {
  Tensor ids_host = Tensor::empty({span}, DType::i32);
  relative_position_buckets(ids_host.data<int32_t>(), first, span, bidirectional, cfg.relative_attention_buckets,
                            cfg.relative_attention_max_distance);
  const Tensor ids = table.device().is_cpu() ? ids_host : ids_host.to(table.device());
  Tensor bias = Tensor::empty({span, table.dim(1)}, table.dtype(), table.device());
  ops::embedding(bias, ids, table, 1.0f);
  return bias;
}

}  // namespace tformer
