// tformer._core: registers the bound classes and functions, and maps C++ errors to
// Python exceptions (TypeError for tformer::TypeError; pybind11 already maps
// std::invalid_argument to ValueError and std::runtime_error to RuntimeError).
#include <pybind11/pybind11.h>

#include "register.h"
#include "tformer/errors.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "tformer C++ core";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const tformer::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
  tformer::bindings::register_info(m);
  tformer::bindings::register_config(m);
  tformer::bindings::register_generate(m);
  tformer::bindings::register_train(m);
  tformer::bindings::register_model(m);
  tformer::bindings::register_ops(m);
  tformer::bindings::register_bench(m);
  tformer::bindings::register_engine(m);
}
