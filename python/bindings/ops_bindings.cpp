// tformer._core.ops: single ops on numpy arrays, for tests and experiments. Inputs are
// copied to the device, the op runs (training ops with the GIL released), results come
// back as new numpy arrays. Arrays that an op accumulates into (dgamma, dtable, ...) may
// be given as initial values; they are copied, never modified. Each op family binds its
// ops in its own file (python/bindings/ops/<family>.cpp, TFORMER_OP_BINDINGS).
#include <pybind11/pybind11.h>

#include <stdexcept>

#include "ops/op_bindings.h"
#include "register.h"

namespace py = pybind11;

namespace tformer::bindings {
namespace {

constexpr int kMaxFamilies = 64;
OpBinder binders[kMaxFamilies];  // zero-initialised before any static initialiser runs
int binder_count = 0;

}  // namespace

bool add_op_bindings(OpBinder binder) {
  if (binder_count == kMaxFamilies) throw std::logic_error("too many op binding families: raise kMaxFamilies");
  binders[binder_count++] = binder;
  return true;
}

void register_ops(py::module_& m) {
  py::module_ o = m.def_submodule("ops", "Single ops on numpy arrays (tests, experiments).");
  for (int i = 0; i < binder_count; ++i) binders[i](o);
}

}  // namespace tformer::bindings
