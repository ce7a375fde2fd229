// The activations' names (Activation itself is in backend.h, with the params structs that
// take one: bias_act.h, gated_act.h). Defined in cpp/ops/ops.cpp.
#pragma once

#include <string>

#include "tformer/backend.h"

namespace tformer::ops {

Activation parse_activation(const std::string& name);  // relu, gelu, gelu_tanh/gelu_new, silu/swish, none
const char* activation_name(Activation a);

}  // namespace tformer::ops
