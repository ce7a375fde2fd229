// Tensor-level ops for training: the backward of every forward op, the fused
// label-smoothed cross-entropy, dropout and AdamW. Conventions (llm.c's): gradients
// of PARAMETERS accumulate (+=) so micro-batches add up; gradients of ACTIVATIONS are
// written (=) unless the function says otherwise. Parameter gradients have the dtype of
// what they belong to, or float32 with float16/bfloat16 values on a GPU (mixed
// precision: they accumulate in float32).
//
// An umbrella, like ops.h: each family's backward is declared in its header
// (tformer/ops/<family>.h) next to its forward.
#pragma once

#include <cstdint>

#include "tformer/ops.h"
#include "tformer/ops/adamw.h"
#include "tformer/ops/cross_entropy.h"
#include "tformer/ops/dropout.h"
#include "tformer/ops/reduce.h"
#include "tformer/tensor.h"
