#pragma once

#include <pybind11/pybind11.h>

namespace tformer::bindings {

void register_info(pybind11::module_& m);    // info_bindings.cpp
void register_config(pybind11::module_& m);  // config_bindings.cpp
void register_model(pybind11::module_& m);   // model_bindings.cpp
void register_ops(pybind11::module_& m);     // ops_bindings.cpp (every op family: ops/*.cpp)
void register_generate(pybind11::module_& m);  // generate_bindings.cpp
void register_train(pybind11::module_& m);     // train_bindings.cpp
void register_bench(pybind11::module_& m);     // bench_bindings.cpp (tensors kept on the device)
void register_engine(pybind11::module_& m);    // engine_bindings.cpp (after register_model: it takes a model)

}  // namespace tformer::bindings
