// CPU implementations of the backend kernels (fp32). See backend.h for the contracts.
#pragma once

#include "tformer/backend.h"

namespace tformer::cpu {

void gemm(const GemmParams& p);
void bias_act(const BiasActParams& p);
void layer_norm(const LayerNormParams& p);
void embedding(const EmbeddingParams& p);
void attention(const AttentionParams& p);
void cast(const CastParams& p);

void set_num_threads(int n);
int get_num_threads();
std::string blas_info();

}  // namespace tformer::cpu
