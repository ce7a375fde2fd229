// How an op family's bindings join tformer._core.ops: its file (python/bindings/ops/<family>.cpp)
// writes
//
//   TFORMER_OP_BINDINGS(layer_norm) {
//     o.def("layer_norm", ..., "one-line summary (tformer.ops's module docstring lists it)");
//   }
//
// and ops_bindings.cpp runs every such block on the `ops` submodule; tformer/ops.py
// re-exports what the submodule has. Nothing else lists the families.
#pragma once

#include <pybind11/pybind11.h>

namespace tformer::bindings {

using OpBinder = void (*)(pybind11::module_& o);
// Records a family's bindings (ops_bindings.cpp); true, for the static initialiser.
bool add_op_bindings(OpBinder binder);

}  // namespace tformer::bindings

#define TFORMER_OP_BINDINGS(family)                                                                \
  static void bind_##family##_ops(pybind11::module_& o);                                          \
  [[maybe_unused]] static const bool tformer_op_bindings_##family =                               \
      ::tformer::bindings::add_op_bindings(&bind_##family##_ops);                                 \
  static void bind_##family##_ops(pybind11::module_& o)
