// Dtype conversion on the host: CPU tensors are float32, so only same-type copies.
#include <cstring>

#include "cpu_kernels.h"
#include "tformer/ops/cast.h"
#include "tformer/errors.h"

namespace tformer::cpu {

void cast(const CastParams& p) {
  if (p.src_dtype == p.dst_dtype) {
    std::memcpy(p.dst, p.src, static_cast<size_t>(p.n) * dtype_size(p.src_dtype));
    return;
  }
  throw_type_error("cpu tensors are float32 only: cannot convert ", dtype_name(p.src_dtype), " to ",
                   dtype_name(p.dst_dtype));
}

TFORMER_CPU_OP(cast);

}  // namespace tformer::cpu
