// Tensor-level ops: each checks its arguments (shapes, dtypes, devices), then
// dispatches to the tensor's device backend. Outputs come first, then inputs,
// then parameters, as in STYLE.md.
//
// An umbrella over the op family headers (tformer/ops/<family>.h: params structs,
// contracts, ops) that existed when it was written; new code includes the family
// header it uses (a new family needs no line here).
#pragma once

#include <vector>

#include "tformer/backend.h"
#include "tformer/ops/attention.h"
#include "tformer/ops/bias_act.h"
#include "tformer/ops/cast.h"
#include "tformer/ops/embedding.h"
#include "tformer/ops/gated_act.h"
#include "tformer/ops/gemm.h"
#include "tformer/ops/int8.h"
#include "tformer/ops/layer_norm.h"
#include "tformer/ops/rows.h"
#include "tformer/tensor.h"
